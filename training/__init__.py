"""Training from a clone: `python -m training.train` (= `keras-defusion train`) and
`python -m training.package`, which writes a shipped model into the package."""
