"""The data contract: read, convert, validate, split and check for leakage (DESIGN "Data contract").

Modules: `readers` (file types, streaming), `formats` (the accepted formats and their JSON Schemas),
`adapters` (Alpaca, ShareGPT, OpenAI preference, hh-rlhf, LLaMA-Factory), `semantics` (checks beyond
the schema), `split` (one seeded split and the leakage keys), `lengths` (length statistics),
`report` (the validation report), `validate` (the pipeline that ties them together).
"""
