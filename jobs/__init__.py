"""Fine-tuning job (SFT, DPO, KTO: jobs/methods/): environment variables in, a validated, saved model out."""
