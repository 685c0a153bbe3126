"""Training the embedded default's models: the shared loop and its two recipes.

* :mod:`.loop`: accelerate + tqdm training loop with EMA, atomic checkpoints and exact resume;
* :mod:`.checkpoint`: sha256-verified checkpoints;
* :mod:`.vae_recipe`: the 16-channel ``AutoencoderKL`` (``tocsr-nas train vae``);
* :mod:`.teacher_recipe`: the tiny LDM teacher on VAE latents (``tocsr-nas train teacher``);
* :mod:`.evaluate`: reconstruction PSNR and held-out denoising loss; :mod:`.sampling`: DDIM sample grids.
"""
