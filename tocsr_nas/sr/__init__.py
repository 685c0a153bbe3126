"""Super-resolution on a (compact) latent-diffusion UNet: adaptation, one-step distillation, upscaling, evaluation.

* :mod:`.adapt`: the LR latent as zero-initialised extra input channels (:class:`~.adapt.SRUNet`);
* :mod:`.model`: the SR model folder (kind ``sr-diffusion`` or ``sr-onestep``);
* :mod:`.data`: seeded HR/LR pairs; :mod:`.train`: the ``sr-adapt`` and ``sr-onestep`` recipes;
* :mod:`.pipeline`: DDIM / one-step inference and whole-image upscaling (:mod:`.tiling`, :mod:`.colorfix`);
* :mod:`.metrics`: PSNR/SSIM on Y; :mod:`.evaluate`: the benchmark protocol, tables and latency.
"""
