"""Reference layouts, position schemes, empty-slot handling and MFI."""
