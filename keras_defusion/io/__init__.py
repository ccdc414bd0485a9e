"""Reading photos and masks, writing files atomically, and pictures of maps."""
