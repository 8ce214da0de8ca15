"""Deep learning on images: segmentation, 2.5D deep features, super-resolution, nnU-Net bridge, weights."""
