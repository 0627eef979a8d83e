"""Pure geometry: coordinate systems, H3, the in-memory resolver. No database here."""
