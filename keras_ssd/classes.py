"""The class lists of the public datasets, in their label order. Data only:
the command line reads them without importing the data package."""

#: The 20 Pascal VOC classes in the devkit's order (label 1..20 of the VOC
#: ports; label 0 is the background).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
