"""``python -m unet_course`` runs the CLI (also what ``torchrun -m unet_course`` uses)."""

from .cli import main

raise SystemExit(main())
