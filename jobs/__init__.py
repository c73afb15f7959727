"""Fine-tuning job (SFT, DPO, KTO: jobs/methods/): environment variables in, a validated, saved model out.

Folders by where the code runs (docs/architecture.md): config/, preflight/, estimate/ and data/ in the
parent before any model loads; launch/ between the parent and the training processes; train/ in each
training process; monitor/ in the exporter process, which every process writes to.
"""
