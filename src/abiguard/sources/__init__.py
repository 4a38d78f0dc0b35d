"""Where binaries come from: installed environments, local wheels, remote wheels and the package index."""
