"""The application on top of the code location: the `pod` command, the in-process runner, the UI
process and recovery of runs killed part-way."""
