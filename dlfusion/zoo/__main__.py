"""``python -m dlfusion.zoo`` == ``dlfusion-zoo``."""

from .cli import main

raise SystemExit(main())
