"""Media sessions with devices: ``live`` (:class:`LiveStreams`: device legs keyed by device, channel and
sub-stream, their receivers, re-INVITE after a media timeout), ``history`` (:class:`HistorySessions`:
playback and download, one device leg per viewer, MANSRTSP control), ``broadcast`` (:class:`VoiceBroadcasts`:
G.711 audio toward a device), ``substreams`` (the sub-stream lines of an offer) and ``stages`` (the failure
:class:`Stage` enum mapped once to HTTP status, SIP status and reason, and the stream states)."""
