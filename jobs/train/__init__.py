"""Each training process: the trainer of the method (trainer.py), the run (run.py), publishing final/ (publish.py).
Imports torch, transformers and TRL; nothing outside this folder imports it at module level."""
