"""Received-power tables (CSV, Parquet) into import units: one transmission per row (*wide*) or per id (*long*).

*Wide*: one row per transmission, one power column per receiver (``--power`` pattern,
``{name}`` the receiver's name; default every column no other option names); a moving
receiver has a power, a latitude and a longitude column (``--moving
'{name}_rss,{name}_x,{name}_y'``, or ``NAME=POWER,LAT,LON`` for one receiver).
*Long*: one row per (transmission, receiver): the id, receiver, power and optionally SNR
columns, and optionally the receiver's position on the row (``--rx-lat``/``--rx-lon``).

Cells: an empty (or NaN, ``nan``, ``null``) power means the receiver was not recorded
(its slot is masked); the ``--not-heard`` value means it listened and heard nothing
(recorded, ``present`` 0). A moving receiver's position cell that is empty or one of the
``--no-position`` values is unknown: not heard there, it is not recorded; heard there, the
recording is bad (its position is what makes it useful). Rows without a transmitter
position are unlabelled samples (kept for ``heimdall predict``).

Receiver positions: a moving receiver's come from its row; a fixed receiver's from the
receivers file (:func:`.receivers_file.read_receivers`), where ``null``/``None``/empty coordinates mean
*unknown*; without a receivers file every fixed position is unknown. An unknown position
is NaN (latitude and longitude) in the slot table (``manifest.json`` writes ``NaN``) and
in ``rx_latlon``; a moving receiver's slot position is NaN as well (its samples carry the
positions). A model that reads positions needs them finite.

Every problem names ``FILE:LINE`` (CSV: the line as a text editor counts it, the header
being line 1; Parquet: ``FILE:row N``, data rows counted from 1) and is a one-line
:class:`ConfigError`; problems in the option set or the header stop before anything is read.

The modules: :mod:`.spec` (the options), :mod:`.rows` and :mod:`.cells` (a file into rows, a cell
into a value), :mod:`.receivers_file` (fixed receivers' positions), :mod:`.reader`, :mod:`.wide` and
:mod:`.long` (rows into import units, per layout), :mod:`.read` (:func:`~.read.read_table`, the driver).
"""
