"""One Pydra task per pipeline stage: thin file-in/file-out wrappers over the numerics."""
