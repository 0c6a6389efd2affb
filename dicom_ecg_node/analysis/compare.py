"""Serial comparison: flags for clinically significant change between an ECG and the patient's prior ECG.

Every threshold is in the one table :data:`THRESHOLDS`, with its source; ``compare(..., thresholds={...})``
overrides values by name. Rules (``ChangeFlag.rule``):

``st-elevation``
    New ST elevation at J in >= 2 contiguous leads (Thygesen K et al. Fourth Universal Definition of Myocardial
    Infarction (2018). Circulation 2018;138:e618-e651 / Eur Heart J 2019;40:237-269, Table 6). "New" is decided per
    lead (meets the cut-point now and not on the prior); contiguity is then required among the new leads.
``st-depression``
    New horizontal or downsloping ST depression >= 50 µV at J in >= 2 contiguous leads (same source). Horizontal or
    downsloping: the ST level rises by at most ``st_depression_horizontal_tolerance_uv`` from J to J+80 ms.
``t-inversion``
    New T inversion deeper than 100 µV in >= 2 contiguous leads with a prominent R wave or R/S > 1 (same source).
``qtc-prolongation``
    QTc newly above 500 ms (550 ms when QRS > 120 ms), or a rise of more than 60 ms (Drew BJ et al. Prevention of
    torsade de pointes in hospital settings: AHA/ACCF scientific statement. J Am Coll Cardiol 2010;55:934-947;
    Rautaharju PM et al. AHA/ACCF/HRS recommendations, Part IV: the ST segment, T and U waves, and the QT interval.
    Circulation 2009;119:e241-e250).
``qrs-widening``
    QRS >= 120 ms where the prior was < 120 ms (Surawicz B et al. AHA/ACCF/HRS recommendations, Part III:
    intraventricular conduction disturbances. Circulation 2009;119:e235-e240).
``axis-change``
    Frontal QRS axis moved between categories: normal -30..+90, left -90..<-30, right >+90..180, and extreme
    (northwest) -180..<-90 (Surawicz 2009, Part III; Kligfield P et al. 2007, Part I), by at least
    ``axis_min_shift_deg``.
``hr-change``
    Heart rate changed by at least ``hr_change_bpm`` (a local setting: no guideline defines it).

Contiguity: limb leads in Cabrera order aVL, I, -aVR, II, aVF, III (``-aVR`` is aVR inverted: its ST and T values
are aVR's negated, its R and S are aVR's S and R); precordial leads V1-V6.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from dicom_ecg_node.analysis.errors import AnalysisError
from dicom_ecg_node.analysis.leads import CABRERA_ORDER, PRECORDIAL_ORDER, contiguous_runs
from dicom_ecg_node.analysis.measure import EcgMeasurements, LeadMeasurements

_UDMI = ("Thygesen K et al. Fourth Universal Definition of Myocardial Infarction (2018), Circulation "
         "2018;138:e618-e651, 'ECG manifestations of acute myocardial ischaemia'")
_DREW = ("Drew BJ et al. Prevention of torsade de pointes in hospital settings, AHA/ACCF scientific statement, "
         "J Am Coll Cardiol 2010;55:934-947; Rautaharju PM et al. AHA/ACCF/HRS recommendations Part IV, "
         "Circulation 2009;119:e241-e250")
_SURAWICZ = ("Surawicz B et al. AHA/ACCF/HRS recommendations for the standardization and interpretation of the "
             "ECG, Part III: intraventricular conduction disturbances, Circulation 2009;119:e235-e240")
_LOCAL = "local setting of dicom-ecg-node (no guideline gives a number); override in the configuration"


@dataclass(frozen=True, slots=True)
class Threshold:
    """One entry of the threshold table.

    Attributes
    ----------
    value : float
    unit : str
    source : str
        The publication (or local decision) the value comes from.
    """

    value: float
    unit: str
    source: str


#: The one threshold table. Read-only; pass ``thresholds={name: value}`` to :func:`compare` to override.
THRESHOLDS: Mapping[str, Threshold] = MappingProxyType({
    "st_elevation_uv": Threshold(100.0, "uV", _UDMI + ": >= 1 mm in all leads other than V2-V3"),
    "st_elevation_v2v3_men_40_plus_uv": Threshold(200.0, "uV", _UDMI + ": V2-V3 >= 2 mm in men >= 40 years"),
    "st_elevation_v2v3_men_under_40_uv": Threshold(250.0, "uV", _UDMI + ": V2-V3 >= 2.5 mm in men < 40 years"),
    "st_elevation_v2v3_women_uv": Threshold(150.0, "uV", _UDMI + ": V2-V3 >= 1.5 mm in women regardless of age"),
    "st_elevation_age_cut_years": Threshold(40.0, "a", _UDMI + ": age bands < 40 and >= 40 years"),
    "st_depression_uv": Threshold(50.0, "uV", _UDMI + ": new horizontal or downsloping ST depression >= 0.5 mm"),
    "st_depression_horizontal_tolerance_uv": Threshold(
        25.0, "uV", "definition of 'horizontal or downsloping' as a rise of at most this much from J to J+80 ms: "
        + _LOCAL),
    "t_inversion_uv": Threshold(100.0, "uV", _UDMI + ": T inversion > 1 mm"),
    "t_inversion_prominent_r_uv": Threshold(
        500.0, "uV", "'prominent R wave' of " + _UDMI + " taken as R >= 0.5 mV: " + _LOCAL),
    "t_inversion_rs_ratio": Threshold(1.0, "1", _UDMI + ": R/S ratio > 1"),
    "qtc_limit_ms": Threshold(500.0, "ms", _DREW + ": QTc > 500 ms"),
    "qtc_limit_wide_qrs_ms": Threshold(550.0, "ms", _DREW + ": QTc > 550 ms when QRS > 120 ms"),
    "qtc_wide_qrs_ms": Threshold(120.0, "ms", _DREW + ": QRS above which the wide-QRS QTc limit applies"),
    "qtc_rise_ms": Threshold(60.0, "ms", _DREW + ": QTc rise > 60 ms from baseline"),
    "qrs_wide_ms": Threshold(120.0, "ms", _SURAWICZ + ": QRS >= 120 ms (complete bundle branch block)"),
    "axis_left_deg": Threshold(-30.0, "deg", _SURAWICZ + "; Kligfield P et al. Part I, Circulation 2007;115:1306: "
                               "normal frontal axis -30..+90 degrees"),
    "axis_right_deg": Threshold(90.0, "deg", _SURAWICZ + ": right axis deviation > +90 degrees"),
    "axis_extreme_deg": Threshold(-90.0, "deg", _SURAWICZ + ": -90..-180 degrees, extreme (right superior) axis"),
    "axis_min_shift_deg": Threshold(10.0, "deg", "smallest axis move that may flag, so that measurement noise at "
                                    "a category boundary does not: " + _LOCAL),
    "hr_change_bpm": Threshold(20.0, "/min", "heart-rate change that flags: " + _LOCAL),
})


def resolve_thresholds(overrides: Mapping[str, float] | None = None) -> Mapping[str, Threshold]:
    """The threshold table with ``overrides`` applied (values only; units and sources stay, marked overridden).

    Raises
    ------
    AnalysisError
        An override names no threshold, or is not a finite number.
    """
    if not overrides:
        return THRESHOLDS
    table = dict(THRESHOLDS)
    for name, value in overrides.items():
        if name not in table:
            raise AnalysisError(f"thresholds: unknown name {name!r}; known: {', '.join(sorted(table))}",
                                reason="bad-threshold")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise AnalysisError(f"thresholds: {name} = {value!r} is not a number", reason="bad-threshold") from exc
        if number != number or number in (float("inf"), float("-inf")):
            raise AnalysisError(f"thresholds: {name} = {value!r} is not finite", reason="bad-threshold")
        table[name] = replace(table[name], value=number,
                              source=f"overridden by configuration (default from {table[name].source})")
    return MappingProxyType(table)


@dataclass(frozen=True, slots=True)
class ChangeFlag:
    """A clinically significant change since the prior ECG.

    Attributes
    ----------
    rule : str
        ``st-elevation``, ``st-depression``, ``t-inversion``, ``qtc-prolongation``, ``qrs-widening``,
        ``axis-change`` or ``hr-change``.
    leads : tuple of str
        Leads that met the rule (``-aVR`` for inverted aVR); empty for global rules.
    values : dict of str to (before, after)
        Measured numbers on the prior and the current ECG, keyed ``"V2.st_j_uv"`` or ``"qtc_ms"``.
    threshold : dict of str to float
        Threshold applied, per lead or per quantity.
    source : str
        The guideline (or local setting) the rule implements.
    detail : str
        One sentence for a human, including any fallback taken (e.g. unknown sex).
    """

    rule: str
    leads: tuple[str, ...]
    values: dict[str, tuple[float | None, float | None]]
    threshold: dict[str, float]
    source: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Comparison:
    """Flags plus the rules that could not be evaluated and why."""

    flags: list[ChangeFlag]
    not_evaluated: dict[str, str] = field(default_factory=dict)


def _view(m: EcgMeasurements, name: str) -> LeadMeasurements | None:
    """A lead's measurements; ``-aVR`` is aVR inverted (ST and T negated, R and S swapped)."""
    if name != "-aVR":
        return m.leads.get(name)
    avr = m.leads.get("aVR")
    if avr is None:
        return None

    def neg(v: float | None) -> float | None:
        return None if v is None else -v

    return LeadMeasurements(st_j_uv=neg(avr.st_j_uv), st_j60_uv=neg(avr.st_j60_uv), st_j80_uv=neg(avr.st_j80_uv),
                            t_amplitude_uv=neg(avr.t_amplitude_uv), r_amplitude_uv=neg(avr.s_amplitude_uv),
                            s_amplitude_uv=neg(avr.r_amplitude_uv))


_ALL_LEADS = (*CABRERA_ORDER, *PRECORDIAL_ORDER)


def _v2v3_cut(sex: str | None, age: int | None, t: Mapping[str, Threshold]) -> tuple[float, str, str]:
    """UDMI V2-V3 cut-point for this patient, the name used, and any fallback said in words."""
    if sex == "F":
        return t["st_elevation_v2v3_women_uv"].value, "st_elevation_v2v3_women_uv", ""
    if sex == "M":
        if age is None:
            return (t["st_elevation_v2v3_men_40_plus_uv"].value, "st_elevation_v2v3_men_40_plus_uv",
                    "age unknown: the lower men's V2-V3 cut-point (>= 40 years) was used")
        if age >= t["st_elevation_age_cut_years"].value:
            return t["st_elevation_v2v3_men_40_plus_uv"].value, "st_elevation_v2v3_men_40_plus_uv", ""
        return t["st_elevation_v2v3_men_under_40_uv"].value, "st_elevation_v2v3_men_under_40_uv", ""
    cuts = {k: t[k].value for k in ("st_elevation_v2v3_women_uv", "st_elevation_v2v3_men_40_plus_uv",
                                     "st_elevation_v2v3_men_under_40_uv")}
    name = min(cuts, key=lambda k: cuts[k])
    return cuts[name], name, "sex unknown: the lowest (most sensitive) V2-V3 cut-point was used"


def _lead_rule(rule: str, current: EcgMeasurements, prior: EcgMeasurements,
               meets: dict[str, float], test_now: Callable[[LeadMeasurements, float], bool | None],
               test_prior: Callable[[LeadMeasurements, float], bool | None], keys: tuple[str, ...],
               source: str, detail: str) -> tuple[ChangeFlag | None, str | None]:
    """Shared per-lead logic: new = meets now and not on the prior; flag when >= 2 new leads are contiguous."""
    new: set[str] = set()
    unknown_prior: list[str] = []
    for name in _ALL_LEADS:
        cur, pri = _view(current, name), _view(prior, name)
        if cur is None or name not in meets or not test_now(cur, meets[name]):
            continue
        prior_meets = test_prior(pri, meets[name]) if pri is not None else None
        if prior_meets is None:
            unknown_prior.append(name)
        if not prior_meets:
            new.add(name)
    runs = contiguous_runs(new)
    if not runs:
        return None, None
    leads = tuple(lead for run in runs for lead in run)
    values: dict[str, tuple[float | None, float | None]] = {}
    for name in leads:
        cur, pri = _view(current, name), _view(prior, name)
        for key in keys:
            values[f"{name}.{key}"] = (None if pri is None else getattr(pri, key), getattr(cur, key))
    text = detail
    if any(name in unknown_prior for name in leads):
        text += "; prior value missing for " + ", ".join(n for n in leads if n in unknown_prior) + \
            " (counted as not meeting the criterion before)"
    return ChangeFlag(rule=rule, leads=leads, values=values, threshold={n: meets[n] for n in leads},
                      source=source, detail=text), None


def evaluate(current: EcgMeasurements, prior: EcgMeasurements, *, sex: str | None = None,
             age_years: int | None = None, thresholds: Mapping[str, float] | None = None) -> Comparison:
    """Like :func:`compare`, also saying which rules could not be evaluated and why."""
    t = resolve_thresholds(thresholds)
    flags: list[ChangeFlag] = []
    skipped: dict[str, str] = {}
    sex_ = (sex or current.patient_sex or prior.patient_sex or "").strip().upper() or None
    sex_ = sex_ if sex_ in ("M", "F") else None
    age = age_years if age_years is not None else current.patient_age_years

    # ---- st-elevation (UDMI 2018)
    cut, cut_name, fallback = _v2v3_cut(sex_, age, t)
    meets = {n: (cut if n in ("V2", "V3") else t["st_elevation_uv"].value) for n in _ALL_LEADS}

    def st_up(lm: LeadMeasurements, thr: float) -> bool | None:
        return None if lm.st_j_uv is None else lm.st_j_uv >= thr

    who = {"F": "woman", "M": "man"}.get(sex_ or "", "sex unknown")
    detail = (f"new ST elevation at J in contiguous leads (V2-V3 cut-point {cut:g} µV for: {who}"
              f"{'' if age is None else f', {age} years'}; other leads {t['st_elevation_uv'].value:g} µV)")
    if fallback:
        detail += "; " + fallback
    flag, _ = _lead_rule("st-elevation", current, prior, meets, st_up, st_up,
                         ("st_j_uv", "st_j60_uv", "st_j80_uv"),
                         t["st_elevation_uv"].source + "; V2-V3: " + t[cut_name].source, detail)
    if flag is not None:
        flags.append(flag)

    # ---- st-depression (UDMI 2018): horizontal or downsloping, J -> J+80 ms
    dep = t["st_depression_uv"].value
    tol = t["st_depression_horizontal_tolerance_uv"].value

    def st_down(lm: LeadMeasurements, thr: float) -> bool | None:
        if lm.st_j_uv is None:
            return None
        if lm.st_j_uv > -thr:
            return False
        return lm.st_j80_uv is None or lm.st_j80_uv - lm.st_j_uv <= tol

    flag, _ = _lead_rule("st-depression", current, prior, dict.fromkeys(_ALL_LEADS, dep), st_down, st_down,
                         ("st_j_uv", "st_j80_uv"), t["st_depression_uv"].source,
                         f"new horizontal or downsloping ST depression >= {dep:g} µV at J (rise J→J+80 ms "
                         f"<= {tol:g} µV) in contiguous leads")
    if flag is not None:
        flags.append(flag)

    # ---- t-inversion (UDMI 2018)
    inv = t["t_inversion_uv"].value
    prominent = t["t_inversion_prominent_r_uv"].value
    ratio = t["t_inversion_rs_ratio"].value

    def t_inv(lm: LeadMeasurements, thr: float) -> bool | None:
        if lm.t_amplitude_uv is None:
            return None
        return lm.t_amplitude_uv < -thr

    def t_inv_now(lm: LeadMeasurements, thr: float) -> bool | None:
        if not t_inv(lm, thr):
            return False
        r, s = lm.r_amplitude_uv or 0.0, abs(lm.s_amplitude_uv or 0.0)
        return r >= prominent or (r > 0 and (s == 0 or r / s > ratio))

    flag, _ = _lead_rule("t-inversion", current, prior, dict.fromkeys(_ALL_LEADS, inv), t_inv_now, t_inv,
                         ("t_amplitude_uv", "r_amplitude_uv", "s_amplitude_uv"), t["t_inversion_uv"].source,
                         f"new T inversion deeper than {inv:g} µV in contiguous leads with R >= {prominent:g} µV "
                         f"or R/S > {ratio:g}")
    if flag is not None:
        flags.append(flag)

    # ---- qtc-prolongation (Drew 2010; Rautaharju 2009)
    formula = current.qtc_formula
    q_now, q_before = current.qtc(formula), prior.qtc(formula)
    if q_now is None or q_before is None:
        skipped["qtc-prolongation"] = "QTc missing on " + ("the current ECG" if q_now is None else "the prior ECG")
    else:
        wide = current.qrs_ms is not None and current.qrs_ms > t["qtc_wide_qrs_ms"].value
        limit = t["qtc_limit_wide_qrs_ms" if wide else "qtc_limit_ms"].value
        rise = t["qtc_rise_ms"].value
        reasons = []
        if q_now > limit >= q_before:
            reasons.append(f"QTc now above {limit:g} ms" + (" (QRS > 120 ms)" if wide else ""))
        if q_now - q_before > rise:
            reasons.append(f"QTc rose by {q_now - q_before:.0f} ms (> {rise:g} ms)")
        if reasons:
            flags.append(ChangeFlag(
                rule="qtc-prolongation", leads=(), values={"qtc_ms": (q_before, q_now),
                                                           "qrs_ms": (prior.qrs_ms, current.qrs_ms)},
                threshold={"qtc_ms": limit, "qtc_rise_ms": rise}, source=t["qtc_limit_ms"].source,
                detail="; ".join(reasons) + f" ({formula})"))

    # ---- qrs-widening (Surawicz 2009)
    wide_ms = t["qrs_wide_ms"].value
    if current.qrs_ms is None or prior.qrs_ms is None:
        skipped["qrs-widening"] = "QRS duration missing on " + (
            "the current ECG" if current.qrs_ms is None else "the prior ECG")
    elif current.qrs_ms >= wide_ms > prior.qrs_ms:
        flags.append(ChangeFlag(rule="qrs-widening", leads=(), values={"qrs_ms": (prior.qrs_ms, current.qrs_ms)},
                                threshold={"qrs_ms": wide_ms}, source=t["qrs_wide_ms"].source,
                                detail=f"QRS now >= {wide_ms:g} ms, before < {wide_ms:g} ms"))

    # ---- axis-change (Surawicz 2009; Kligfield 2007)
    if current.axis_deg is None or prior.axis_deg is None:
        skipped["axis-change"] = "QRS axis missing on " + (
            "the current ECG" if current.axis_deg is None else "the prior ECG")
    else:
        before_cat, after_cat = axis_category(prior.axis_deg, t), axis_category(current.axis_deg, t)
        shift = abs((current.axis_deg - prior.axis_deg + 180.0) % 360.0 - 180.0)
        if before_cat != after_cat and shift >= t["axis_min_shift_deg"].value:
            flags.append(ChangeFlag(
                rule="axis-change", leads=(), values={"axis_deg": (prior.axis_deg, current.axis_deg)},
                threshold={"axis_left_deg": t["axis_left_deg"].value, "axis_right_deg": t["axis_right_deg"].value,
                           "axis_min_shift_deg": t["axis_min_shift_deg"].value},
                source=t["axis_left_deg"].source, detail=f"frontal axis {before_cat} → {after_cat}"))

    # ---- hr-change (local setting)
    if current.heart_rate_bpm is None or prior.heart_rate_bpm is None:
        skipped["hr-change"] = "heart rate missing"
    else:
        delta = current.heart_rate_bpm - prior.heart_rate_bpm
        if abs(delta) >= t["hr_change_bpm"].value:
            flags.append(ChangeFlag(
                rule="hr-change", leads=(), values={"heart_rate_bpm": (prior.heart_rate_bpm, current.heart_rate_bpm)},
                threshold={"hr_change_bpm": t["hr_change_bpm"].value}, source=t["hr_change_bpm"].source,
                detail=f"heart rate {'rose' if delta > 0 else 'fell'} by {abs(delta):.0f} bpm"))
    return Comparison(flags=flags, not_evaluated=skipped)


def axis_category(axis_deg: float, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> str:
    """``"normal"`` (-30..+90), ``"left"`` (-90..<-30), ``"right"`` (>+90..180) or ``"extreme"`` (-180..<-90)."""
    a = (axis_deg + 180.0) % 360.0 - 180.0  # into [-180, 180)
    if a == -180.0:
        a = 180.0
    if thresholds["axis_left_deg"].value <= a <= thresholds["axis_right_deg"].value:
        return "normal"
    if a > thresholds["axis_right_deg"].value:
        return "right"
    if a >= thresholds["axis_extreme_deg"].value:
        return "left"
    return "extreme"


def compare(current: EcgMeasurements, prior: EcgMeasurements, *, sex: str | None = None,
            age_years: int | None = None, thresholds: Mapping[str, float] | None = None) -> list[ChangeFlag]:
    """Flags for clinically significant change from ``prior`` to ``current``.

    Parameters
    ----------
    current, prior : EcgMeasurements
        From :func:`~dicom_ecg_node.analysis.measure`; the prior is the patient's previous ECG in true UTC order.
    sex : {"M", "F"}, optional
        Overrides the recordings' Patient's Sex (else the current's, else the prior's). When unknown, the lowest
        V2-V3 ST-elevation cut-point is used and the flag's ``detail`` says so.
    age_years : int, optional
        Overrides the age at the current ECG (from Patient's Birth Date). A man of unknown age gets the >= 40 cut-point
        (the lower of the two), said in ``detail``.
    thresholds : mapping of str to float, optional
        Overrides of :data:`THRESHOLDS` values by name.

    Returns
    -------
    list of ChangeFlag
        In rule order; empty when nothing changed significantly. Rules that could not be evaluated (a value missing)
        produce no flag; :func:`evaluate` lists them.

    Raises
    ------
    AnalysisError
        An unknown or non-numeric threshold override.
    """
    return evaluate(current, prior, sex=sex, age_years=age_years, thresholds=thresholds).flags
