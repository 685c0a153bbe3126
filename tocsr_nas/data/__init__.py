"""Training data: image folders and the images bundled with scikit-image."""
from .images import (
                     BUILTIN,
                     IMAGE_EXTENSIONS,
                     WRITE_FORMATS,
                     ImageCropDataset,
                     builtin_image_files,
                     list_image_files,
                     load_image,
                     probe_images,
                     resolve_image_files,
                     write_image,
)

__all__ = ["BUILTIN", "IMAGE_EXTENSIONS", "WRITE_FORMATS", "ImageCropDataset", "builtin_image_files",
           "list_image_files", "load_image", "probe_images", "resolve_image_files", "write_image"]
