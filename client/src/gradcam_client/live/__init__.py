"""Live sources: the live job, several streams in one process, sources and their guard, recordings
and re-streams, a sample sender."""
