"""Front doors over HTTP: the lean STIR API (``stir``) for SBCs and the management API."""
