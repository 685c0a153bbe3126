"""Training data: image folders and the images bundled with scikit-image."""
from .images import (
                     BUILTIN,
                     IMAGE_EXTENSIONS,
                     ImageCropDataset,
                     builtin_image_files,
                     list_image_files,
                     load_image,
                     resolve_image_files,
)

__all__ = ["BUILTIN", "IMAGE_EXTENSIONS", "ImageCropDataset", "builtin_image_files", "list_image_files", "load_image",
           "resolve_image_files"]
