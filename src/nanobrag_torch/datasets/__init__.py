"""Many frames from one model: ``series`` (frames as renders, in-process or as Dask tasks), ``cluster`` (the
embedded or remote Dask cluster) and ``writer`` (each frame's files written atomically, NeXus assembled at the
end, complete frames found again on -resume)."""
