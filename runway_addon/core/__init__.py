"""The bpy-free engine of the add-on: model specs, codecs, protocol clients,
runtimes and jobs. Nothing in here may import bpy; a pipeline script can use it
in plain Python (see README, "Client API")."""
