"""SFT/DPO fine-tuning job: environment variables in, a validated, saved model out."""
