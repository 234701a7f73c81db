"""What the operator touches: the command line, the shell and the Textual app."""
