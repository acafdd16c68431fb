"""The bodycam-sync command line: a thin shim over the library, plus rendering."""
