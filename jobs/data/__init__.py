"""The data contract: read, convert, validate, split and check for leakage (README "The data contract").

Modules, bottom up: `readers` (file types), `sources` (a file, glob, directory of shards or Hub snapshot
to files; sha256), `formats` (the accepted formats, one JSON Schema each in schemas/), `adapters`
(Alpaca, ShareGPT, OpenAI preference, hh-rlhf, LLaMA-Factory, Axolotl), `semantics` (checks beyond the
schema), `hygiene` (characters a reader does not see), `split` (canonical JSON, the keys, one seeded
split), `keys` (key tables: duplicates and leakage), `report` (the validation report and the merge of
partial reports), `prepared` (the files training reads), `lengths` (length statistics),
`file_validator` (one file in one pass), `shards` (one large file in parallel ranges), `validate` (every
file, the split, the commit).
"""
