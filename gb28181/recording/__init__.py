"""Recorded video (playback, download, record search): the sans-IO layers the media session and the API use.

One module per job, none touching a socket or a clock:

* `times`: GB local times read and written in the ``sip.timezone`` zone, windows, the +8 h quirk.
* `records`: the RecordInfo query and its answer assembled across pages (``RecordAssembler``).
* `offer`: the ``s=Playback``/``s=Download`` INVITE offer, the history SSRC, the device's answer.
* `mansrtsp`: the PLAY/PAUSE/TEARDOWN codec of the INFO body, with a per-dialog ``CSeqCounter``.
* `progress`: the playback position the commands imply, and download progress.

End of file is :class:`gbgw.gb28181.manscdp.MediaStatusNotify` (``end_of_file``), read with the other
MANSCDP messages.
"""
