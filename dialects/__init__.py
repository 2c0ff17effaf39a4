"""dlfusion's dialects (installed as `dlfusion.dialects`)."""
