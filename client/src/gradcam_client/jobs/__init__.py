"""Jobs over media: the stream engine, the file job (`process_media`), the predictions and maps
written, the target class."""
