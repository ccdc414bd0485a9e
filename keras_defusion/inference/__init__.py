"""Running a trained model on photos: the resize contract, the detector and its runners."""
