"""Running preprocessing: case plans, the per-case loop, publication, the card and verification."""
