"""Docker on a machine with no registry: start a daemon, build Verisim's images offline, clean up by label."""
