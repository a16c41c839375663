"""The mmserver control plane (installed as mmserver_admin): admin HTTP app and the mmadmin CLI."""
