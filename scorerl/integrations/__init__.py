"""Using a trained token compressor inside users' own inference: hf_generate.py plugs it into transformers'
`generate`; lmms_eval.py is the lmms-eval plugin (`--model scorerl`)."""
