"""Examples for partner agencies connecting their own systems to Enlace."""
