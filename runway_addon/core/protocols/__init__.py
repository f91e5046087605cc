"""One client per wire protocol; each maps its server's description into core.spec."""
