"""The camera device API over a transport: the wire camera and the mass-storage camera."""
