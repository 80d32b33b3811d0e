"""Data modules; each is registered under the ``genlab.data`` entry-point group."""
