"""After the training processes exit, in the entrypoint: the staged final model checked and published."""
