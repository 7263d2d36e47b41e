"""What a run leaves behind: the steering profile (JSON format), the profile bound to a runtime,
and exports for servers that know nothing about SAEs."""
