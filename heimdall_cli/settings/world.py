"""The data sections that describe signals: the synthetic world and the IQ feature extractor.

Every world default is a published or measured value for VHF/UHF links, cited in the
field's description (docs/background/synthetic-world.md); none is tuned to make a target easy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """A settings section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorldSettings(Section):
    """The synthetic RF world (written into every dataset manifest). Version 2 synthesises IQ."""

    version: Literal[1, 2] = Field(2, description="1: the analytic band-energy world (datasets made before IQ "
                                   "synthesis); 2: complex baseband IQ through the feature extractor.")
    seed: int = Field(0, ge=0, description="The network's fixed properties: per-station gain, antenna pattern, "
                      "noise figure, LO error (and random placements). data.seed draws the transmissions.")
    field_seed: int = Field(0, ge=0, description="The terrain: the fixed shadowing field. Another value is another "
                            "terrain under the same network (the sim-to-real check uses field_seed + 1).")
    frequency_mhz: float = Field(145.0, gt=0, description="Carrier frequency (2 m band).")
    path_loss_exponent: float = Field(2.5, ge=1.5, le=5, description="Log-distance path-loss exponent "
                                      "(2.0-3.5 covers terrain and clutter).")
    shadowing_db: float = Field(6.0, ge=0, description="Log-normal shadowing σ per link, dB (4-8 dB measured for "
                                "macro links).")
    shadowing_correlation_m: float = Field(500.0, gt=0, description="Decorrelation distance of the shadowing "
                                           "field, exponential model (Gudmundson 1991: about 500 m, suburban).")
    tx_power_dbm: tuple[float, float] = Field((30.0, 40.0), description="Transmit power range, dBm (1-10 W "
                                              "handhelds and mobiles).")
    noise_floor_dbm: float = Field(-120.0, description="Mean receiver noise floor in a 12.5 kHz channel, dBm "
                                   "(thermal -133 dBm plus noise figure).")
    noise_figure_spread_db: float = Field(2.0, ge=0, description="σ of the stations' noise floors around the "
                                          "mean, dB (SDR front ends 1-6 dB NF, with and without preamplifier).")
    gain_spread_db: float = Field(3.0, ge=0, description="σ of the stations' system gain (antenna gain minus "
                                  "feeder loss), dB: omni 0-2 dBi, collinear 5-8 dBi, 1-4 dB feeder loss at 2 m.")
    directional_fraction: float = Field(0.3, ge=0, le=1, description="Share of stations with a directional "
                                        "antenna (a Yagi) instead of an omni.")
    pattern_depth_db: float = Field(12.0, ge=0, description="Front-to-back ratio of a directional antenna, dB "
                                    "(3-5 element Yagis: 10-20 dB, ARRL Antenna Book).")
    dropout_rate: float = Field(0.1, ge=0, lt=1, description="Share of recordings a station misses (off, or no "
                                "IQ fetched).")
    lo_error_ppm: float = Field(1.0, ge=0, description="σ of a station's local-oscillator error, ppm (TCXO "
                                "receivers 0.5-2 ppm); rounded to FFT bins.")
    tx_error_ppm: float = Field(2.5, ge=0, description="σ of the transmitter's frequency error, ppm (amateur "
                                "radio specifications: ±2.5 ppm).")
    peak_deviation_hz: float = Field(2500.0, gt=0, description="Peak FM deviation of voice (12.5 kHz channels: "
                                     "2.5 kHz, ETSI EN 300 086).")
    ctcss_deviation_hz: float = Field(350.0, ge=0, description="Deviation of the CTCSS sub-audible tone (about "
                                      "15 % of the peak deviation, TIA-603).")
    random_placement: bool = Field(False, description="Place the receivers at random in every sample instead of "
                                   "the fixed network (gains and patterns then change with them).")
    receivers: tuple[int, int] = Field((4, 12), description="With random_placement: how many receivers a sample "
                                       "has (uniform in this range; 2 to 15).")
    lat_range: tuple[float, float] = Field((44.0, 46.0), description="Transmitter latitude range.")
    lon_range: tuple[float, float] = Field((7.0, 10.0), description="Transmitter longitude range.")
    n_mels: int = Field(32, ge=4, description="Version 1 only: mel bands per spectrogram.")
    n_frames: int = Field(32, ge=4, description="Version 1 only: time frames per spectrogram.")

    @model_validator(mode="after")
    def _check_ranges(self) -> WorldSettings:
        lo, hi = self.receivers
        if not 2 <= lo <= hi <= 15:
            raise ValueError("receivers must be a range within 2..15, e.g. 4, 12")
        for name in ("lat_range", "lon_range", "tx_power_dbm"):
            a, b = getattr(self, name)
            if a >= b:
                raise ValueError(f"{name} must be (low, high) with low < high")
        return self


class FeatureSettings(Section):
    """The one IQ -> features extractor: strided STFT, log band powers, per-receiver scalars."""

    sample_rate_hz: float = Field(12000.0, gt=0, description="IQ sample rate the extractor expects (WebSDR IQ is "
                                  "about 12 kHz complex); recordings within ±5 % are accepted as this rate.")
    fft_size: int = Field(64, ge=16, le=4096, description="Samples per STFT frame (64 at 12 kHz: 187.5 Hz bins).")
    frames: int = Field(32, ge=4, le=512, description="STFT frames per recording, spread evenly over it.")
    bands: int = Field(32, ge=4, le=256, description="Mel-spaced bands over |offset from the carrier| "
                       "(the spectrogram's rows).")
    window: Literal["rect", "hann"] = Field("rect", description="STFT window.")
    noise_edge_fraction: float = Field(0.1, gt=0, lt=0.5, description="Outer share of the bins that estimates "
                                       "the noise (as Heimdall's acquisition computes SNR).")
    present_snr_db: float = Field(3.0, description="A receiver counts as hearing the signal above this SNR, dB.")

    @model_validator(mode="after")
    def _check_bands(self) -> FeatureSettings:
        if self.bands > self.fft_size // 2:
            raise ValueError(f"bands ({self.bands}) must be at most fft_size / 2 ({self.fft_size // 2})")
        return self
