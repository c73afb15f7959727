"""The data contract: read, convert, validate, split and check for leakage (README "The data contract").

Modules, bottom up: `readers` (file types, streaming), `formats` (the accepted formats, one JSON Schema
each in schemas/), `adapters` (Alpaca, ShareGPT, OpenAI preference, hh-rlhf, LLaMA-Factory),
`semantics` (checks beyond the schema), `split` (one seeded split and the leakage keys), `report` (the
validation report and the merge of partial reports), `prepared` (the files training reads),
`lengths` (length statistics), `file_validator` (one file in one pass), `shards` (one large file in
parallel ranges), `validate` (every file, the split, the commit).
"""
