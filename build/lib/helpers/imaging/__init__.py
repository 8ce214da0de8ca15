"""Images and masks: reading, geometry, preprocessing, regions of interest, habitats and image QC."""
