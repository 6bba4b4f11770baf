"""Synthetic landing files for the personalization warehouse, with their ground truth.

Why this exists: the pipeline (ingest -> dbt -> models_ml -> publish) must be built and tested
against input as messy as real customer drops, and its tests must know the *truth* behind that
mess: which records are one person, which persona a user has, which sessions are "engaged
shopper" sessions, which rows are broken and why. This module writes both:

- ``DIR/raw/<source>/``: what a customer would drop, following the input contract of DESIGN.md
  (events, context, profiles, catalog, consent, erasure) in mixed formats (JSON lines, gzipped
  JSON lines, CSV, Parquet), with planted mess: re-delivered events, many spellings of event
  types / devices / OSes / categories, four timestamp encodings, anonymous browsing followed by
  a login, CRM duplicates with typos, junk emails, impossible values and a few broken rows.
- ``DIR/truth/``: what really happened. The pipeline never reads it; tests do.

Behind the mess, people behave like shoppers, so that segments and propensity models have
something real to find: a persona sets tastes, devices and times of day; a latent shopping
propensity per person, fixed over time, sets how often they visit, how long they stay an active
customer before lapsing, how deep they browse, how often they fill carts and how likely a visit
ends in a purchase; and visits come in missions that tend to end in a purchase. Buying after a
cutoff is therefore predictable from behaviour before it, without any label leaking into it.

Design rules:

- Deterministic: the same arguments give byte-identical files. All randomness comes from one
  seed, split into independent streams per concern (changing how profiles are drawn moves no
  event), per-row format choices are hashes of the row's identity, and time is anchored on
  ``end_date``, never on the clock.
- Vectorized: a benchmark runs this at 1,000,000 users / ~20,000,000 events, so nothing loops
  per user, session or event. numpy draws the numbers, pyarrow compute builds the strings (JSON
  lines included), pandas only converts time zones, and files are rendered and written in
  chunks of CHUNK_ROWS rows so memory stays bounded. Faker only fills small pools (names,
  streets, postcodes, regions) that numpy samples from.
"""

from __future__ import annotations

import gzip
import json
import os
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from faker import Faker
from faker.providers.geo import Provider as GeoProvider

CHUNK_ROWS = 500_000  # rows rendered and written at a time
WRITER_THREADS = max(1, min(4, os.cpu_count() or 1))  # events files written concurrently

# ---------------------------------------------------------------------------------------------
# Vocabulary. Spellings are chosen so that the normalization of the config files (lower-case,
# drop every character that is not a letter or digit) maps them, except the UNMAPPED ones,
# which the pipeline is meant NOT to know.
# ---------------------------------------------------------------------------------------------

CATEGORIES = (
    "electronics",
    "fashion",
    "home_garden",
    "books",
    "sports",
    "beauty",
    "toys",
    "grocery",
)
UNMAPPED_CATEGORY = "pet_supplies"  # real items, preferred by no persona, not in the config
ALL_CATEGORIES = (*CATEGORIES, UNMAPPED_CATEGORY)
CATEGORY_SPELLINGS = {
    "electronics": ("Electronics", "electronics ", "ELECTRONICS", "electronics", "Tech"),
    "fashion": ("Fashion", "fashion", "Apparel", "CLOTHING"),
    "home_garden": ("Home & Garden", "home_garden", "Home and Garden", "HOME_GARDEN"),
    "books": ("Books", "books", "Book", " BOOKS"),
    "sports": ("Sports", "sports", "Sports & Outdoors", "sport"),
    "beauty": ("Beauty", "beauty", "Cosmetics"),
    "toys": ("Toys", "toys", "Toys & Games"),
    "grocery": ("Grocery", "grocery", "Groceries", "Food"),
    "pet_supplies": ("Pet Supplies",),
}
SUBCATEGORIES = {
    "electronics": ("Phones", "Laptops", "Audio", "Cameras", "Accessories"),
    "fashion": ("Dresses", "Shoes", "Jackets", "Bags"),
    "home_garden": ("Kitchen", "Furniture", "Garden Tools", "Decor"),
    "books": ("Fiction", "Non-fiction", "Cookbooks", "Children's Books"),
    "sports": ("Running", "Cycling", "Fitness", "Camping"),
    "beauty": ("Skincare", "Makeup", "Fragrance", "Hair Care"),
    "toys": ("Board Games", "Building Sets", "Dolls", "Puzzles"),
    "grocery": ("Coffee & Tea", "Snacks", "Pantry", "Beverages"),
    "pet_supplies": ("Dog", "Cat"),
}
PRODUCT_NOUNS = {
    "electronics": ("Headphones", "Smartphone", "Laptop", "Speaker", "Smartwatch", "Camera"),
    "fashion": ("Sneakers", "Dress", "Jacket", "Handbag", "Scarf", "Jeans"),
    "home_garden": ("Blender", "Armchair", "Lamp", "Garden Hose", "Cookware Set", "Rug"),
    "books": ("Novel", "Cookbook", "Biography", "Atlas", "Picture Book", "Thriller"),
    "sports": ("Running Shoes", "Yoga Mat", "Bike Helmet", "Tent", "Dumbbells", "Backpack"),
    "beauty": ("Face Cream", "Lipstick", "Perfume", "Shampoo", "Serum", "Mascara"),
    "toys": ("Puzzle", "Board Game", "Building Set", "Doll", "Plush Bear", "Toy Car"),
    "grocery": ("Coffee Beans", "Green Tea", "Olive Oil", "Granola", "Dark Chocolate", "Pasta"),
    "pet_supplies": ("Dog Bed", "Cat Tree", "Pet Bowl"),
}
ADJECTIVES = ("Classic", "Pro", "Ultra", "Eco", "Compact", "Premium", "Essential", "Deluxe")
CATEGORY_TAGS = {
    "electronics": ("wireless", "bluetooth", "4k", "portable", "usb-c", "gaming"),
    "fashion": ("cotton", "slim-fit", "leather", "summer", "winter", "casual"),
    "home_garden": ("kitchen", "outdoor", "wood", "handmade", "modern", "cozy"),
    "books": ("paperback", "hardcover", "bestseller-list", "award-winner", "classic", "series"),
    "sports": ("running", "outdoor", "lightweight", "waterproof", "training", "camping"),
    "beauty": ("vegan", "organic", "fragrance-free", "spf", "travel-size", "natural"),
    "toys": ("kids", "educational", "family", "wooden", "ages-3+", "creative"),
    "grocery": ("organic", "fair-trade", "gluten-free", "vegan", "bulk", "snack"),
    "pet_supplies": ("dog", "cat", "durable"),
}
GENERIC_TAGS = ("new", "sale", "gift", "eco", "bestseller")
PRICE_MEDIANS = {
    "electronics": 180.0,
    "fashion": 45.0,
    "home_garden": 60.0,
    "books": 16.0,
    "sports": 55.0,
    "beauty": 24.0,
    "toys": 30.0,
    "grocery": 9.0,
    "pet_supplies": 22.0,
}
BRAND_SUFFIXES = ("& Co", "Labs", "Works", "Studio", "Goods", "Supply")

# Canonical event types (the code of a type is its position) plus one the pipeline does not know.
EVENT_TYPES = (
    "page_view",
    "view_product",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "begin_checkout",
    "purchase",
    "rate",
    "click_recommendation",
    "login",
    "hover",
)
(
    PAGE_VIEW,
    VIEW_PRODUCT,
    SEARCH,
    ADD_TO_CART,
    REMOVE_FROM_CART,
    BEGIN_CHECKOUT,
    PURCHASE,
    RATE,
    CLICK_RECOMMENDATION,
    LOGIN,
    HOVER,
) = range(len(EVENT_TYPES))
UNMAPPED_EVENT_TYPE_SPELLINGS = ("hover", "Hover")
SPELLING_STYLES = ("snake", "camel", "alias", "upper", "kebab")
EVENT_TYPE_ALIASES = {  # other names of each type, all listed in event_types.yaml
    "page_view": ("pageview", "screen_view", "PageView"),
    "view_product": ("product_view", "view_item", "product_detail"),
    "search": ("site_search", "search_query"),
    "add_to_cart": ("cart_add", "add_to_basket"),
    "remove_from_cart": ("cart_remove", "remove_cart"),
    "begin_checkout": ("checkout_started", "start_checkout"),
    "purchase": ("order_completed", "transaction"),
    "rate": ("rating", "review"),
    "click_recommendation": ("rec_click", "recommendation_click"),
    "login": ("sign_in", "identify"),
    "hover": ("hover",),
}
# Browsing events of a session (after the landing page view, before the cart funnel).
BROWSING_TYPE_SHARES = {
    PAGE_VIEW: 0.10,
    VIEW_PRODUCT: 0.55,
    SEARCH: 0.12,
    RATE: 0.05,
    CLICK_RECOMMENDATION: 0.10,
    HOVER: 0.018,
}
PREFERRED_CATEGORY_SHARE = 0.85
# Buying behaviour (see _make_owners, _customer_spells, _make_sessions): one latent shopping
# propensity per user, standard normal and fixed over time, moves how often they visit, how
# long they stay an active customer, how deep they browse, how often they fill a cart or reach
# the checkout, and how likely a visit ends in a purchase. Visits come in missions (returns
# within about a day) that tend to end in a purchase. So what a user did before a cutoff
# predicts whether they buy after it, as it does for real shoppers.
VISITS_PER_DAY = 0.48  # mean sessions per day of a spell of MEAN_LIFETIME_DAYS
PROPENSITY_VISIT_EFFECT = 0.5  # log visit rate per standard deviation of propensity
VISIT_RATE_NOISE = 0.3  # log visit rate, person-level noise independent of the propensity
PROPENSITY_PURCHASE_EFFECT = 0.9  # log-odds of buying in a visit per standard deviation
PURCHASE_RATE_NOISE = 0.3  # log-odds, person-level noise
MEAN_LIFETIME_DAYS = 6.0  # mean spell as an active customer at average propensity ...
PROPENSITY_LIFETIME_EFFECT = 0.5  # ... times exp(this x propensity)
MIN_LIFETIME_DAYS = 0.5  # added to every spell
SPELL_VISIT_EXPONENT = 0.2  # a spell's visits grow as its length to this power
SPELL_DRAWS = 50  # spells drawn at most per user until one has a visit in the window
RETURN_VISIT_SHARE = 0.55  # gaps between visits that are short returns, not long pauses
LONG_PAUSE_TO_RETURN_RATIO = 8.0  # mean long pause / mean short return
MISSION_OPENING_LIFT = 0.2  # purchase chance x this in a visit that a return follows ...
MISSION_CLOSING_LIFT = 2.5  # ... x this in the last visit of a mission of several visits
ABANDONED_CART_BASE = 0.10  # chance of a cart without purchase in a visit ...
ABANDONED_CART_PER_PURCHASE_RATE = 0.8  # ... plus this times the user's purchase rate ...
MISSION_OPENING_CART_LIFT = 0.25  # ... plus this when a return follows (to buy then)
ABANDONED_CHECKOUT_BASE = 0.15  # chance that an unbought cart reached the checkout ...
ABANDONED_CHECKOUT_PER_PURCHASE_RATE = 0.8  # ... plus this times the user's purchase rate ...
MISSION_OPENING_CHECKOUT_LIFT = 0.3  # ... plus this when a return follows
PROPENSITY_BROWSING_EFFECT = 0.1  # log browsing depth per standard deviation of propensity
MAX_ORDINARY_VIEWS = 3  # of one item in one session; the pipeline's trigger is "> 3 views"
SESSION_GAP_SECONDS = 45 * 60  # sessions of one person are at least this far apart (> 30 min)
MAX_GAP_IN_SESSION_SECONDS = 20 * 60  # events of one session are at most this far apart
REDELIVERY_SHARE = 0.02

DEVICES = ("mobile", "desktop", "tablet")
TIMES_OF_DAY = ("morning", "afternoon", "evening", "night")
TIME_OF_DAY_LOCAL_HOURS = ((6, 12), (12, 18), (18, 23), (23, 30))  # night ends 06:00 next day


@dataclass(frozen=True)
class Persona:
    name: str
    preferred_categories: tuple[str, ...]
    device_mix: tuple[float, ...]  # over DEVICES
    time_of_day_mix: tuple[float, ...]  # over TIMES_OF_DAY, in the user's local time
    purchase_rate: float  # a typical member's chance that an identified visit ends in a purchase
    population_share: float


def _persona(name, categories, device_percent, time_percent, purchase_rate, share) -> Persona:
    device_mix = tuple(p / 100 for p in device_percent)
    time_mix = tuple(p / 100 for p in time_percent)
    return Persona(name, categories, device_mix, time_mix, purchase_rate, share)


PERSONAS = tuple(
    _persona(*row)
    for row in (
        # name, preferred categories, device % (mobile, desktop, tablet),
        # time of day % (morning, afternoon, evening, night), purchase rate, population share
        ("tech_enthusiast", ("electronics",), (10, 80, 10), (5, 10, 65, 20), 0.10, 0.18),
        ("fashion_lover", ("fashion", "beauty"), (85, 5, 10), (5, 20, 65, 10), 0.22, 0.20),
        ("home_maker", ("home_garden", "grocery"), (10, 10, 80), (75, 15, 5, 5), 0.20, 0.18),
        ("bookworm", ("books",), (10, 65, 25), (5, 5, 15, 75), 0.12, 0.14),
        ("active_lifestyle", ("sports",), (80, 10, 10), (70, 20, 5, 5), 0.15, 0.15),
        ("family_shopper", ("toys",), (55, 15, 30), (10, 75, 10, 5), 0.18, 0.15),
    )
)
PERSONA_PREFERRED = np.array(
    [
        [CATEGORIES.index(c) for c in p.preferred_categories]
        + [-1] * (2 - len(p.preferred_categories))
        for p in PERSONAS
    ]
)


@dataclass(frozen=True)
class Region:
    timezone: str
    country_code: str
    country_name: str
    faker_locale: str
    phone_country_code: str
    population_share: float


REGIONS = (
    Region("America/New_York", "US", "United States", "en_US", "1", 0.16),
    Region("America/Chicago", "US", "United States", "en_US", "1", 0.09),
    Region("America/Los_Angeles", "US", "United States", "en_US", "1", 0.09),
    Region("Europe/Berlin", "DE", "Germany", "de_DE", "49", 0.14),
    Region("Europe/London", "GB", "United Kingdom", "en_GB", "44", 0.12),
    Region("Europe/Paris", "FR", "France", "fr_FR", "33", 0.10),
    Region("Asia/Tokyo", "JP", "Japan", "ja_JP", "81", 0.08),
    Region("Australia/Sydney", "AU", "Australia", "en_AU", "61", 0.06),
    Region("America/Sao_Paulo", "BR", "Brazil", "pt_BR", "55", 0.07),
    Region("Asia/Kolkata", "IN", "India", "en_IN", "91", 0.09),
)
LOCALES = tuple(dict.fromkeys(region.faker_locale for region in REGIONS))


@dataclass(frozen=True)
class Platform:
    """A kind of device a session runs on, with the spellings trackers use for it."""

    name: str
    device: str  # one of DEVICES, or "other" for the platforms the config does not map
    share_within_device: float
    device_spellings: tuple[str, ...]
    os_spellings: tuple[str, ...]
    browsers: tuple[tuple[str, float], ...]  # (browser, share)


PLATFORMS = (
    Platform(
        "iphone",
        "mobile",
        0.55,
        ("iPhone", "mobile", "Mobile", "smartphone"),
        ("iOS", "ios", "iPhone OS"),
        (("Safari", 0.8), ("Chrome", 0.2)),
    ),
    Platform(
        "android_phone",
        "mobile",
        0.45,
        ("mobile", "Mobile", "smartphone", "android_phone", "phone"),
        ("Android", "android", "AndroidOS"),
        (("Chrome", 0.8), ("Samsung Internet", 0.2)),
    ),
    Platform(
        "windows_pc",
        "desktop",
        0.60,
        ("Desktop", "desktop", "PC", "computer", "windows_pc"),
        ("Windows 10", "Windows 11", "Win10", "windows"),
        (("Chrome", 0.65), ("Edge", 0.25), ("Firefox", 0.10)),
    ),
    Platform(
        "mac",
        "desktop",
        0.30,
        ("Desktop", "desktop", "Mac", "computer"),
        ("macOS", "Mac OS X", "OSX"),
        (("Safari", 0.5), ("Chrome", 0.5)),
    ),
    Platform(
        "linux_pc",
        "desktop",
        0.10,
        ("desktop", "Desktop", "computer", "Laptop"),
        ("Linux", "Ubuntu", "ChromeOS"),
        (("Chrome", 0.6), ("Firefox", 0.4)),
    ),
    Platform(
        "ipad", "tablet", 0.65, ("iPad", "tablet", "Tablet"), ("iPadOS", "iOS"), (("Safari", 1.0),)
    ),
    Platform(
        "android_tablet",
        "tablet",
        0.35,
        ("tablet", "Tablet", "android_tablet", "Tab"),
        ("Android",),
        (("Chrome", 1.0),),
    ),
    # Unmapped on purpose: the pipeline should file these under device and os "other".
    Platform("smart_tv", "other", 0.5, ("SmartTV",), ("Tizen",), (("Samsung Internet", 1.0),)),
    Platform("console", "other", 0.5, ("PlayStation",), ("Orbis OS",), (("Console Browser", 1.0),)),
)
UNMAPPED_DEVICE_SHARE = 0.005  # share of sessions on a platform of device "other"

_GECKO = "(KHTML, like Gecko)"
_IPHONE = f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 {_GECKO}"
_IPAD = f"Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 {_GECKO}"
_ANDROID = "Mozilla/5.0 (Linux; Android 14; {model}) AppleWebKit/537.36 " + _GECKO
_BLINK = "Mozilla/5.0 ({platform}) AppleWebKit/537.36 " + _GECKO + " Chrome/126.0.0.0"
_FIREFOX = "Mozilla/5.0 ({platform}; rv:127.0) Gecko/20100101 Firefox/127.0"
_SAFARI_MAC = f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 {_GECKO}"
_WINDOWS, _MAC, _LINUX = "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7", "X11"
USER_AGENTS = {
    ("iphone", "Safari"): f"{_IPHONE} Version/17.5 Mobile/15E148 Safari/604.1",
    ("iphone", "Chrome"): f"{_IPHONE} CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
    ("android_phone", "Chrome"): _ANDROID.format(model="Pixel 8")
    + " Chrome/126.0.0.0 Mobile Safari/537.36",
    ("android_phone", "Samsung Internet"): _ANDROID.format(model="SM-S918B")
    + " SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    ("windows_pc", "Chrome"): _BLINK.format(platform=_WINDOWS) + " Safari/537.36",
    ("windows_pc", "Edge"): _BLINK.format(platform=_WINDOWS) + " Safari/537.36 Edg/126.0.2592.68",
    ("windows_pc", "Firefox"): _FIREFOX.format(platform=_WINDOWS),
    ("mac", "Safari"): f"{_SAFARI_MAC} Version/17.5 Safari/605.1.15",
    ("mac", "Chrome"): _BLINK.format(platform=_MAC) + " Safari/537.36",
    ("linux_pc", "Chrome"): _BLINK.format(platform=f"{_LINUX}; Linux x86_64") + " Safari/537.36",
    ("linux_pc", "Firefox"): _FIREFOX.format(platform=f"{_LINUX}; Ubuntu; Linux x86_64"),
    ("ipad", "Safari"): f"{_IPAD} Version/17.5 Mobile/15E148 Safari/604.1",
    ("android_tablet", "Chrome"): _ANDROID.format(model="SM-X710")
    + " Chrome/126.0.0.0 Safari/537.36",
    ("smart_tv", "Samsung Internet"): "Mozilla/5.0 (SMART-TV; Linux; Tizen 7.0) "
    + f"AppleWebKit/537.36 {_GECKO} SamsungBrowser/5.0 TV Safari/537.36",
    ("console", "Console Browser"): "Mozilla/5.0 (PlayStation; PlayStation 5/6.50) "
    + f"AppleWebKit/605.1.15 {_GECKO}",
}

SITE = "https://shop.example.com"
(
    PATH_STATIC,
    PATH_PRODUCT,
    PATH_RECOMMENDED_PRODUCT,
    PATH_SEARCH,
    PATH_CATEGORY,
    PATH_LOGIN,
    PATH_CART,
    PATH_CHECKOUT,
    PATH_CONFIRMATION,
) = range(9)
PATH_PREFIXES = ("", "/p/", "/p/", "/search?q=", "/category/", "/login", "/cart", "/checkout")
PATH_PREFIXES += ("/checkout/confirmation",)
PATH_SUFFIXES = ("", "", "?ref=reco", "", "", "", "", "", "")
STATIC_PAGES = ("/", "/deals", "/new-arrivals", "/help", "/account")
REFERRER_PREVIOUS_PAGE, REFERRER_NONE = -1, -2  # else an index into EXTERNAL_REFERRERS
EXTERNAL_REFERRERS = (
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://www.facebook.com/",
    "https://newsletter.example.com/",
    "https://www.instagram.com/",
)
APP_VERSIONS = ("4.2.0", "4.2.1", "4.3.0")

EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "gmx.de", "web.de")
EMAIL_DOMAINS += ("orange.fr", "hotmail.co.uk", "proton.me", "mail.example.org")
JUNK_EMAILS = ("test@example.com", "n/a", "N/A", "none", "noreply@example.com")
IMPOSSIBLE_BIRTH_DATES = ("1999-02-31", "2003-04-31", "1987-13-05")
IMPOSSIBLE_AGES = (150, 150, -3, -3)
GENDER_SPELLINGS = (("F", "M", "X"), ("female", "male", "diverse"))  # crm_a, crm_b
SOURCE_SYSTEMS = ("crm_a", "crm_b")
# Phone layouts; the digits are the same in all of them (country code, area, exchange, line).
PHONE_PREFIX = ("+", "+", "+", "", "")
PHONE_AFTER_COUNTRY = (" ", "-", " (", "", ".")
PHONE_AFTER_AREA = (" ", "-", ") ", "", ".")
PHONE_AFTER_EXCHANGE = (" ", "-", "-", "", ".")
CONSENT_PURPOSES = ("analytics", "personalization", "marketing")
CONSENT_GRANT_RATES = (0.94, 0.92, 0.50)
CONSENT_SOURCES = ("cookie_banner", "signup_form", "preference_center", "crm_import")


@dataclass(frozen=True)
class EventFile:
    """One events landing file and the conventions of the system that produced it."""

    key: str
    path: str  # relative to raw/
    fmt: str  # jsonl, jsonl.gz, csv, parquet
    session_share: float
    carries_session_id: bool
    timestamp_encoding: str
    spelling_style_mix: tuple[float, ...]  # over SPELLING_STYLES


EVENT_FILES = (
    EventFile(
        key="web",
        path="events/web_clickstream.jsonl",
        fmt="jsonl",
        session_share=0.30,
        carries_session_id=True,
        timestamp_encoding="iso8601_local_offset_or_z",
        spelling_style_mix=(0.85, 0.0, 0.15, 0.0, 0.0),
    ),
    EventFile(
        key="app",
        path="events/mobile_app_events.jsonl.gz",
        fmt="jsonl.gz",
        session_share=0.22,
        carries_session_id=True,
        timestamp_encoding="iso8601_utc_millis_z_or_local_offset",
        spelling_style_mix=(0.10, 0.80, 0.10, 0.0, 0.0),
    ),
    EventFile(
        key="store",
        path="events/store_export.csv",
        fmt="csv",
        session_share=0.20,
        carries_session_id=True,
        timestamp_encoding="naive_local_plus_timezone_column",
        spelling_style_mix=(0.30, 0.0, 0.70, 0.0, 0.0),
    ),
    EventFile(
        key="warehouse",
        path="events/warehouse_export.parquet",
        fmt="parquet",
        session_share=0.25,
        carries_session_id=False,
        timestamp_encoding="epoch_milliseconds_int64",
        spelling_style_mix=(0.20, 0.0, 0.50, 0.30, 0.0),
    ),
    EventFile(
        key="legacy",
        path="events/legacy_tracker_epoch.jsonl",
        fmt="jsonl",
        session_share=0.03,
        carries_session_id=True,
        timestamp_encoding="epoch_seconds_string",
        spelling_style_mix=(0.0, 0.0, 0.0, 0.0, 1.0),
    ),
)
WEB, APP, STORE, WAREHOUSE, LEGACY = range(len(EVENT_FILES))
CARRIES_SESSION_ID = np.array([f.carries_session_id for f in EVENT_FILES])

_RANDOM_STREAMS = (
    "pools",
    "catalog",
    "people",
    "sessions",
    "events",
    "files",
    "context",
    "profiles",
    "consent",
    "erasure",
)
# Salts of the hash-derived ids and per-row choices (any distinct constants).
_SALT_EVENT_HIGH, _SALT_EVENT_LOW = 0x1F3D5B79, 0x5DEECE66D
_SALT_ANONYMOUS_HIGH, _SALT_ANONYMOUS_LOW = 0x2545F491, 0x4F6CDD1D
_SALT_SESSION, _SALT_UTC_CHOICE, _SALT_APP_VERSION = 0x51ED27, 0x7A3C11, 0x3B9ACA07


# ---------------------------------------------------------------------------------------------
# Vectorized helpers: pyarrow strings, group ranks, hash-derived ids, timestamp text, time zones
# ---------------------------------------------------------------------------------------------

STRING = pa.large_string()  # 64-bit offsets: a file's worth of JSON lines can exceed 2 GB


def _strings(values) -> pa.Array:
    return pa.array(list(values), type=STRING)


def _literal(text: str) -> pa.Scalar:
    return pa.scalar(text, type=STRING)


def _null(type_: pa.DataType = STRING) -> pa.Scalar:
    return pa.scalar(None, type=type_)


def _join(*parts) -> pa.Array:
    """Concatenate string arrays and literals row by row; a null part makes the row null."""
    args = [_literal(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, _literal(""))


def _take(pool: pa.Array, indices: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """pool[indices], null where not ``valid``."""
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    return pool.take(pa.array(np.asarray(indices, dtype=np.int64), mask=mask))


def _as_text(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    return pc.cast(pa.array(values, mask=mask), STRING)


def _padded(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(_as_text(values), width=width, padding="0")


def _where(condition: np.ndarray, if_true, if_false) -> pa.Array:
    def lift(x):
        return _literal(x) if isinstance(x, str) else x

    return pc.if_else(pa.array(np.asarray(condition, dtype=bool)), lift(if_true), lift(if_false))


def _null_where(values: pa.Array, missing: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(missing), _null(values.type), values)


def _rank_within_sorted_groups(sorted_keys: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal keys (keys already sorted)."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def _choose_from_cumulative(rng: np.random.Generator, cumulative_rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row, each row with its own cumulative weights."""
    u = rng.random(len(cumulative_rows))[:, None] * cumulative_rows[:, -1:]
    return (u >= cumulative_rows).sum(axis=1).clip(max=cumulative_rows.shape[1] - 1)


def _scramble(indices: np.ndarray, salt: int) -> np.ndarray:
    """A bijection of uint64 (splitmix64 finalizer): distinct indices give distinct values."""
    x = indices.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return x


def _hash_fraction(indices: np.ndarray, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) per index, the same wherever the index is rendered."""
    return (_scramble(indices, salt) >> np.uint64(11)).astype(np.float64) / float(2**53)


_HEX_PAIRS = np.array([list(f"{b:02x}".encode()) for b in range(256)], dtype=np.uint8).view("<u2")


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """A (rows, width) uint8 matrix of ASCII codes -> one string per row, without a row loop."""
    rows, width = chars.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.Array.from_buffers(STRING, rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _hex16(values: np.ndarray) -> np.ndarray:
    """(rows, 16) ASCII hex digits of uint64 values: one 2-digit lookup per byte."""
    big_endian_bytes = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return _HEX_PAIRS[:, 0][big_endian_bytes].view(np.uint8).reshape(-1, 16)


def _hex_ids(indices: np.ndarray, prefix: str, salt: int) -> pa.Array:
    """Unique ids like ``sess_3f9a0c1d2e4b5a69``: prefix + 16 hex digits of a bijection."""
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    chars = np.empty((len(indices), len(head) + 16), dtype=np.uint8)
    chars[:, : len(head)] = head
    chars[:, len(head) :] = _hex16(_scramble(indices, salt))
    return _fixed_width_strings(chars)


def _uuid_ids(indices: np.ndarray, salt_high: int, salt_low: int) -> pa.Array:
    """UUID-v4-looking ids, a pure function of the index; unique because the low 64 bits are
    a bijection of it (so ids can be recomputed for any chunk of rows, never stored)."""
    high, low = _hex16(_scramble(indices, salt_high)), _hex16(_scramble(indices, salt_low))
    chars = np.full((len(indices), 36), ord("-"), dtype=np.uint8)
    chars[:, 0:8], chars[:, 9:13], chars[:, 14:18] = high[:, 0:8], high[:, 8:12], high[:, 12:16]
    chars[:, 19:23], chars[:, 24:36] = low[:, 0:4], low[:, 4:16]
    chars[:, 14] = ord("4")  # the version nibble lives in the high half; uniqueness in the low
    return _fixed_width_strings(chars)


def _put_digits(chars: np.ndarray, column: int, values: np.ndarray, width: int) -> None:
    for k in range(width):
        chars[:, column + width - 1 - k] = 48 + (values // 10**k) % 10


_TIMESTAMP_TAILS = {"naive": b"", "iso_z": b"Z", "iso_z_millis": b".000Z", "iso_offset": b"+00:00"}


def _timestamp_text(utc_seconds: np.ndarray, style: str, offsets: np.ndarray | None = None):
    """Epoch seconds as text, built digit by digit (pc.strftime is ~10x slower at this size).

    style: "iso_z" ``2026-10-12T16:23:45Z``, "iso_z_millis" ``...45.000Z``, "iso_offset"
    ``2026-10-12T18:23:45+02:00`` (local wall time, needs ``offsets``), "naive"
    ``2026-10-12 18:23:45`` (local wall time if ``offsets`` are given, else UTC).
    """
    offsets = np.zeros(len(utc_seconds), dtype=np.int64) if offsets is None else offsets
    stamps = (utc_seconds + offsets).astype("datetime64[s]")
    days, months = stamps.astype("datetime64[D]"), stamps.astype("datetime64[M]")
    year = stamps.astype("datetime64[Y]").astype(np.int64) + 1970
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    clock = (stamps - days).astype(np.int64)
    tail = _TIMESTAMP_TAILS[style]
    chars = np.empty((len(utc_seconds), 19 + len(tail)), dtype=np.uint8)
    _put_digits(chars, 0, year, 4)
    _put_digits(chars, 5, months.astype(np.int64) % 12 + 1, 2)
    _put_digits(chars, 8, day, 2)
    _put_digits(chars, 11, clock // 3600, 2)
    _put_digits(chars, 14, clock // 60 % 60, 2)
    _put_digits(chars, 17, clock % 60, 2)
    chars[:, [4, 7]] = ord("-")
    chars[:, [13, 16]] = ord(":")
    chars[:, 10] = ord(" ") if style == "naive" else ord("T")
    chars[:, 19:] = np.frombuffer(tail, dtype=np.uint8)
    if style == "iso_offset":
        chars[:, 19] = np.where(offsets < 0, ord("-"), ord("+"))
        minutes = np.abs(offsets) // 60
        _put_digits(chars, 20, minutes // 60, 2)
        _put_digits(chars, 23, minutes % 60, 2)
    return _fixed_width_strings(chars)


def _utc_offsets(utc_seconds: np.ndarray, region_index: np.ndarray) -> np.ndarray:
    """UTC offset in seconds of each instant in its region's time zone (DST-aware)."""
    offsets = np.zeros(len(utc_seconds), dtype=np.int32)
    for index, region in enumerate(REGIONS):
        rows = np.flatnonzero(region_index == index)
        if len(rows) == 0:
            continue
        instants = pd.DatetimeIndex(utc_seconds[rows].astype("datetime64[s]")).tz_localize("UTC")
        local = instants.tz_convert(region.timezone).tz_localize(None).as_unit("s")
        offsets[rows] = local.asi8 - utc_seconds[rows]
    return offsets


def _is_ambiguous_local_time(local_seconds: np.ndarray, region_index: np.ndarray) -> np.ndarray:
    """True where a wall-clock time occurs twice (DST fall-back): naive + zone can't say which."""
    ambiguous = np.zeros(len(local_seconds), dtype=bool)
    for index, region in enumerate(REGIONS):
        rows = np.flatnonzero(region_index == index)
        if len(rows) == 0:
            continue
        naive = pd.DatetimeIndex(local_seconds[rows].astype("datetime64[s]"))
        localized = naive.tz_localize(region.timezone, ambiguous="NaT", nonexistent="NaT")
        ambiguous[rows] = np.asarray(localized.isna())
    return ambiguous


# ---------------------------------------------------------------------------------------------
# Writers: rows are rendered chunk by chunk into pyarrow tables and written as CSV, Parquet or
# JSON lines (assembled with pyarrow compute: pandas' writer is slow and escapes every "/");
# planted broken lines are spliced in at known 1-based data rows.
# ---------------------------------------------------------------------------------------------

Render = Callable[[int, int], pa.Table]  # rows [start, stop) -> table
_NEEDS_JSON_ESCAPE = r'["\\\x00-\x1f]'


def _json_escaped(text: pa.Array) -> pa.Array:
    if not pc.any(pc.match_substring_regex(text, _NEEDS_JSON_ESCAPE)).as_py():
        return text  # the common case: generated ids, URLs, timestamps
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, raw, escaped)
    return pc.replace_substring_regex(text, r"[\x00-\x1f]", "")


@dataclass(frozen=True)
class JsonStyle:
    """How a JSON-lines file writes its values."""

    literal_columns: frozenset[str] = frozenset()  # written as they are: numbers, booleans, objects
    omit_nulls: bool = False  # leave the key out instead of writing null
    generated_text: bool = False  # every string is ours (ids, URLs...): skip the escaping scan


def _json_lines(table: pa.Table, style: JsonStyle) -> pa.Array:
    """One JSON object per row, newline-terminated, keys in column order (first never null)."""
    pieces: list = []
    for index, name in enumerate(table.column_names):
        values = table[name].combine_chunks()
        quote = "" if name in style.literal_columns else '"'
        text = pc.cast(values, STRING)
        if quote and not style.generated_text:
            text = _json_escaped(text)
        lead = "{" if index == 0 else ","
        opening = f'{lead}"{name}":{quote}'
        if values.null_count == 0:
            pieces += [opening, text] + ([quote] if quote else [])
            continue
        if index == 0:
            raise ValueError(f"first JSON column {name!r} has nulls")
        member = _join(opening, text, quote)
        fallback = "" if style.omit_nulls else f'{lead}"{name}":null'
        pieces.append(pc.fill_null(member, _literal(fallback)))
    return _join(*pieces, "}\n")


def _text_bytes(lines: pa.Array) -> pa.Buffer:
    """The concatenation of a null-free string array, straight from its data buffer."""
    if len(lines) == 0:
        return pa.py_buffer(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    offsets = offsets[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _splice_positions(n_rows: int, n_broken: int) -> list[int]:
    """1-based data rows of the broken lines: spread over the file, distinct, increasing."""
    total = n_rows + n_broken
    positions = [1 + int(f * (total - 1)) for f in np.linspace(0.15, 0.85, num=n_broken)]
    for i in range(1, len(positions)):
        positions[i] = max(positions[i], positions[i - 1] + 1)
    return positions


def _narrow_strings(table: pa.Table) -> pa.Table:
    fields = [pa.field(f.name, pa.string() if f.type == STRING else f.type) for f in table.schema]
    return table.cast(pa.schema(fields))


def _chunks(n_rows: int) -> list[tuple[int, int]]:
    return [(s, min(s + CHUNK_ROWS, n_rows)) for s in range(0, n_rows, CHUNK_ROWS)] or [(0, 0)]


def _write_rows(
    path: Path,
    fmt: str,
    n_rows: int,
    render: Render,
    broken_lines: Sequence[str] = (),
    json_style: JsonStyle = JsonStyle(),
) -> list[int]:
    """Write ``n_rows`` rows, rendered chunk by chunk, as csv / jsonl / jsonl.gz / parquet.

    Broken lines (raw text) are spliced in; returns their 1-based data row numbers (for a CSV,
    the file line is one more because of the header).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        writer = None
        for start, stop in _chunks(n_rows):
            table = _narrow_strings(render(start, stop))
            writer = writer or pq.ParquetWriter(path, table.schema, compression="snappy")
            writer.write_table(table.cast(writer.schema))
        writer.close()
        return []
    positions = _splice_positions(n_rows, len(broken_lines))
    pending = list(zip(positions, broken_lines, strict=True))
    csv_options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    with open(path, "wb") as file_handle:
        handle = file_handle
        if fmt.endswith(".gz"):  # mtime=0 and no file name: the same bytes on every run
            handle = gzip.GzipFile("", "wb", compresslevel=1, fileobj=file_handle, mtime=0)

        def write_block(block, start: int, count: int) -> None:
            if count == 0:
                return
            if fmt == "csv":
                pacsv.write_csv(block.slice(start, count), handle, write_options=csv_options)
            else:
                handle.write(_text_bytes(block.slice(start, count)))

        next_row = 1
        for chunk_index, (start, stop) in enumerate(_chunks(n_rows)):
            table = render(start, stop)
            if fmt == "csv":
                if chunk_index == 0:
                    header = pacsv.WriteOptions(include_header=True, quoting_style="needed")
                    pacsv.write_csv(table.slice(0, 0), handle, write_options=header)
                block = table
            else:
                block = _json_lines(table, json_style)
            done, count = 0, stop - start
            while pending and pending[0][0] - next_row <= count - done:
                position, text = pending.pop(0)
                write_block(block, done, position - next_row)
                handle.write(text.encode() + b"\n")
                done, next_row = done + position - next_row, position + 1
            write_block(block, done, count - done)
            next_row += count - done
        if handle is not file_handle:
            handle.close()
    return positions


def _write_table(path: Path, fmt: str, table: pa.Table, **options) -> list[int]:
    return _write_rows(path, fmt, table.num_rows, lambda a, b: table.slice(a, b - a), **options)


# ---------------------------------------------------------------------------------------------
# Pools (filled by Faker once, small) and the catalog
# ---------------------------------------------------------------------------------------------


@dataclass
class _Pool:
    """Strings of all locales concatenated; locale k owns [start[k], start[k] + count[k])."""

    values: pa.Array
    start: np.ndarray
    count: np.ndarray

    def draw(self, rng: np.random.Generator, locale: np.ndarray) -> np.ndarray:
        return self.start[locale] + (rng.random(len(locale)) * self.count[locale]).astype(np.int64)


def _pool(per_locale: list[list[str]]) -> _Pool:
    counts = np.array([len(v) for v in per_locale], dtype=np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    return _Pool(_strings([s for v in per_locale for s in v]), starts, counts)


def _ascii_slug(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return "".join(ch for ch in folded if ch.isalnum()) or "x"


def _typo(name: str, rng: np.random.Generator) -> str:
    """The name with one letter (never the first) replaced: what a CRM typo looks like."""
    if len(name) < 3:
        return name + "e"
    position = int(rng.integers(1, len(name)))
    replacement = "aeiourstnl"[int(rng.integers(0, 10))]
    if name[position].lower() == replacement:
        replacement = "y"
    return name[:position] + replacement + name[position + 1 :]


@dataclass
class _Pools:
    first_female: _Pool
    first_male: _Pool
    last: _Pool
    first_female_ascii: pa.Array  # aligned with first_female.values, for email addresses
    first_male_ascii: pa.Array
    last_ascii: pa.Array
    first_female_typo: pa.Array  # aligned with first_female.values, one letter changed
    first_male_typo: pa.Array
    last_typo: pa.Array
    streets: _Pool
    postcodes: _Pool
    regions: _Pool
    city_names: pa.Array  # cities of every REGIONS time zone, with coordinates
    city_lat: np.ndarray
    city_lon: np.ndarray
    city_start: np.ndarray  # per region
    city_count: np.ndarray


def _names(provider, attribute: str) -> list[str]:
    values = getattr(provider, attribute)
    return list(values.keys() if isinstance(values, dict) else values)[:2000]


def _build_pools(rng: np.random.Generator, seed: int) -> _Pools:
    female, male, last, streets, postcodes, regions = [], [], [], [], [], []
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(seed)
        person = next(p for p in fake.providers if "providers.person" in type(p).__module__)
        romanized = "_romanized" if locale == "ja_JP" else ""
        female.append(_names(person, f"first{romanized}_names_female"))
        male.append(_names(person, f"first{romanized}_names_male"))
        last.append(_names(person, f"last{romanized}_names"))
        streets.append(sorted({fake.street_name() for _ in range(150)}))
        postcodes.append([fake.postcode() for _ in range(80)])
        unit = getattr(fake, "administrative_unit", None) or fake.state
        regions.append(sorted({unit() for _ in range(60)}))

    def derived(per_locale: list[list[str]], transform) -> pa.Array:
        return _strings([transform(name) for names in per_locale for name in names])

    cities = [[c for c in GeoProvider.land_coords if c[4] == r.timezone] for r in REGIONS]
    flat_cities = [c for per_region in cities for c in per_region]
    city_count = np.array([len(c) for c in cities], dtype=np.int64)
    return _Pools(
        first_female=_pool(female),
        first_male=_pool(male),
        last=_pool(last),
        first_female_ascii=derived(female, _ascii_slug),
        first_male_ascii=derived(male, _ascii_slug),
        last_ascii=derived(last, _ascii_slug),
        first_female_typo=derived(female, lambda n: _typo(n, rng)),
        first_male_typo=derived(male, lambda n: _typo(n, rng)),
        last_typo=derived(last, lambda n: _typo(n, rng)),
        streets=_pool(streets),
        postcodes=_pool(postcodes),
        regions=_pool(regions),
        city_names=_strings([c[2] for c in flat_cities]),
        city_lat=np.array([float(c[0]) for c in flat_cities]),
        city_lon=np.array([float(c[1]) for c in flat_cities]),
        city_start=np.r_[0, np.cumsum(city_count)[:-1]].astype(np.int64),
        city_count=city_count,
    )


@dataclass
class _Catalog:
    item_ids: pa.Array
    category: np.ndarray  # index into ALL_CATEGORIES
    price: np.ndarray
    noun: pa.Array  # product noun, used as the search term that finds it
    n_categories: int  # categories that have items (the unmapped one only in larger catalogs)
    items_by_category: np.ndarray  # item indices sorted by category
    category_start: np.ndarray  # into items_by_category
    category_end: np.ndarray
    popularity_cumulative: np.ndarray  # aligned with items_by_category
    table: pa.Table  # as written, with raw category spellings


def _per_category_draw(rng, table: dict, category: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """A pool of all categories' values, and per item an index of one of its category's values."""
    counts = np.array([len(table[c]) for c in ALL_CATEGORIES])
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    index = starts[category] + (rng.random(len(category)) * counts[category]).astype(np.int64)
    return _strings([v for c in ALL_CATEGORIES for v in table[c]]), index


def _make_catalog(rng: np.random.Generator, n_items: int, pools: _Pools) -> _Catalog:
    n_unmapped = max(1, round(0.02 * n_items)) if n_items >= 50 else 0
    category = rng.permutation(
        np.r_[np.arange(n_items - n_unmapped) % len(CATEGORIES), [len(CATEGORIES)] * n_unmapped]
    ).astype(np.int64)
    # The first spelling of a category is the usual one (half the items); others share the rest.
    spelling_pool, spelling_index = _per_category_draw(rng, CATEGORY_SPELLINGS, category)
    usual = np.r_[0, np.cumsum([len(CATEGORY_SPELLINGS[c]) for c in ALL_CATEGORIES])[:-1]]
    spelling_index = np.where(rng.random(n_items) < 0.5, usual[category], spelling_index)
    noun_pool, noun_index = _per_category_draw(rng, PRODUCT_NOUNS, category)
    subcategory_pool, subcategory_index = _per_category_draw(rng, SUBCATEGORIES, category)
    noun = _take(noun_pool, noun_index)

    surnames = sorted({_ascii_slug(n).title() for n in pools.last.values[:300].to_pylist()})
    brands = _strings([f"{name} {suffix}" for name in surnames for suffix in BRAND_SUFFIXES])
    brand = _take(brands, rng.integers(0, len(brands), n_items))
    adjective = _take(_strings(ADJECTIVES), rng.integers(0, len(ADJECTIVES), n_items))
    medians = np.array([PRICE_MEDIANS[c] for c in ALL_CATEGORIES])
    price = np.floor(rng.lognormal(np.log(medians[category]), 0.5)) + 0.99

    # Tags: 2-4 distinct words of the item's category plus generic ones, "|"- or ","-joined.
    tag_lists = [CATEGORY_TAGS[c] + GENERIC_TAGS for c in ALL_CATEGORIES]
    tag_count = np.array([len(t) for t in tag_lists])
    tag_start = np.r_[0, np.cumsum(tag_count)[:-1]]
    keys = rng.random((n_items, tag_count.max()))
    keys[np.arange(tag_count.max())[None, :] >= tag_count[category][:, None]] = 2.0  # padding
    picks = np.argsort(keys, axis=1)[:, :4]
    n_tags = rng.integers(2, 5, n_items)
    chosen = (tag_start[category][:, None] + picks)[np.arange(4)[None, :] < n_tags[:, None]]
    tag_words = _take(_strings([t for tags in tag_lists for t in tags]), chosen)
    tag_lists_arrow = pa.LargeListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(n_tags)]), tag_words
    )
    tags = pc.binary_join(tag_lists_arrow, _where(rng.random(n_items) < 0.5, "|", ","))

    item_ids = _join("SKU-", _padded(np.arange(n_items) + 100001, 6))
    table = pa.table(
        {
            "item_id": item_ids,
            "title": _join(brand, " ", adjective, " ", noun),
            "category": _take(spelling_pool, spelling_index),
            "subcategory": _take(subcategory_pool, subcategory_index),
            "brand": brand,
            "price": pa.array(price),
            "tags": tags,
            "in_stock": pa.array(rng.random(n_items) >= 0.05),
            "is_curated": pa.array(rng.random(n_items) < 0.03),
        }
    )
    by_category = np.argsort(category, kind="stable")
    sorted_category = category[by_category]
    every_category = np.arange(len(ALL_CATEGORIES))
    return _Catalog(
        item_ids=item_ids,
        category=category,
        price=price,
        noun=noun,
        n_categories=len(CATEGORIES) + (1 if n_unmapped else 0),
        items_by_category=by_category,
        category_start=np.searchsorted(sorted_category, every_category, side="left"),
        category_end=np.searchsorted(sorted_category, every_category, side="right"),
        popularity_cumulative=np.cumsum(rng.lognormal(0.0, 1.0, n_items)),
        table=table,
    )


def _draw_items(
    rng: np.random.Generator,
    preferred: np.ndarray,
    catalog: _Catalog,
    preferred_share: float = PREFERRED_CATEGORY_SHARE,
) -> np.ndarray:
    """Items for product interactions (one per row of ``preferred``, the row's 1-2 preferred
    categories, -1 padded): a preferred category with ``preferred_share``, else one of the
    other categories uniformly; within the category by item popularity."""
    n = len(preferred)
    n_preferred = (preferred >= 0).sum(axis=1)
    pick = (rng.random(n) * n_preferred).astype(np.int64)
    preferred_pick = preferred[np.arange(n), pick]
    # A uniform non-preferred category: draw among the others, then step over preferred ones.
    other = (rng.random(n) * (catalog.n_categories - n_preferred)).astype(np.int64)
    skip = np.sort(np.where(preferred >= 0, preferred, 1 << 30), axis=1)
    for column in range(skip.shape[1]):
        other += other >= skip[:, column]
    category = np.where(rng.random(n) < preferred_share, preferred_pick, other)

    cumulative = catalog.popularity_cumulative
    start, end = catalog.category_start[category], catalog.category_end[category]
    low = np.where(start > 0, cumulative[np.maximum(start - 1, 0)], 0.0)
    high = cumulative[end - 1]
    position = np.searchsorted(cumulative, low + rng.random(n) * (high - low), side="right")
    return catalog.items_by_category[np.clip(position, start, end - 1)].astype(np.int32)


# ---------------------------------------------------------------------------------------------
# People who browse, their sessions and their events
# ---------------------------------------------------------------------------------------------


@dataclass
class _Owners:
    """Everyone who browses: users 0..n_users-1, then visitors who never log in."""

    n_users: int
    persona: np.ndarray
    region: np.ndarray
    city: np.ndarray  # index into pools.city_*
    is_anonymous_browser: np.ndarray  # sometimes starts anonymous (every visitor does)
    is_engaged: np.ndarray
    shopping_propensity: np.ndarray  # latent, standard normal; 0 for visitors
    purchase_rate: np.ndarray  # base chance that an identified visit ends in a purchase
    visit_rate: np.ndarray  # sessions per day of a spell of MEAN_LIFETIME_DAYS
    primary_platform: np.ndarray
    home_ip: np.ndarray  # (owners, 4) octets
    user_ids: pa.Array  # per user
    anonymous_ids: pa.Array  # per owner, null for owners who never browse anonymously

    @property
    def n_owners(self) -> int:
        return len(self.persona)


def _platform_choice_table() -> np.ndarray:
    """Per device, cumulative shares over PLATFORMS (zero for other devices' platforms)."""
    shares = np.array(
        [[p.share_within_device if p.device == d else 0.0 for p in PLATFORMS] for d in DEVICES]
    )
    return np.cumsum(shares, axis=1)


def _persona_cumulative(attribute: str) -> np.ndarray:
    return np.cumsum(np.array([getattr(p, attribute) for p in PERSONAS]), axis=1)


def _make_owners(rng: np.random.Generator, n_users: int, pools: _Pools) -> _Owners:
    n = n_users + max(1, round(0.10 * n_users))  # plus never-logged-in visitors
    persona_share = np.array([p.population_share for p in PERSONAS])
    persona = rng.choice(len(PERSONAS), size=n, p=persona_share / persona_share.sum())
    region_share = np.array([r.population_share for r in REGIONS])
    region = rng.choice(len(REGIONS), size=n, p=region_share / region_share.sum())
    city = pools.city_start[region] + (rng.random(n) * pools.city_count[region]).astype(np.int64)
    is_user = np.arange(n) < n_users
    is_anonymous_browser = ~is_user | (rng.random(n) < 0.30)
    is_engaged = np.zeros(n, dtype=bool)
    is_engaged[rng.choice(n_users, size=max(1, round(0.08 * n_users)), replace=False)] = True
    # The latent shopping propensity (users only) and what it moves per user: the chance that
    # a visit ends in a purchase (around the persona's rate) and the visit rate.
    propensity = rng.standard_normal(n) * is_user
    mean_rate = np.array([p.purchase_rate for p in PERSONAS])[persona]
    purchase_logit = (
        np.log(mean_rate / (1 - mean_rate))
        + PROPENSITY_PURCHASE_EFFECT * propensity
        + PURCHASE_RATE_NOISE * rng.standard_normal(n)
    )
    purchase_rate = np.round(1 / (1 + np.exp(-purchase_logit)), 4) * is_user
    visit_rate = VISITS_PER_DAY * np.exp(
        PROPENSITY_VISIT_EFFECT * propensity
        + VISIT_RATE_NOISE * rng.standard_normal(n)
        - (PROPENSITY_VISIT_EFFECT**2 + VISIT_RATE_NOISE**2) / 2  # mean VISITS_PER_DAY
    )
    device = _choose_from_cumulative(rng, _persona_cumulative("device_mix")[persona])
    primary_platform = _choose_from_cumulative(rng, _platform_choice_table()[device])
    octet_ranges = ((11, 224), (0, 256), (0, 256), (1, 255))
    home_ip = np.column_stack([rng.integers(low, high, n) for low, high in octet_ranges])
    anonymous_ids = _uuid_ids(np.arange(n), _SALT_ANONYMOUS_HIGH, _SALT_ANONYMOUS_LOW)
    return _Owners(
        n_users=n_users,
        persona=persona,
        region=region,
        city=city,
        is_anonymous_browser=is_anonymous_browser,
        is_engaged=is_engaged,
        shopping_propensity=propensity,
        purchase_rate=purchase_rate,
        visit_rate=visit_rate * is_user,
        primary_platform=primary_platform,
        home_ip=home_ip,
        user_ids=_join("U", _padded(np.arange(n_users) + 1, 7)),
        anonymous_ids=_null_where(anonymous_ids, ~is_anonymous_browser),
    )


@dataclass
class _Sessions:
    owner: np.ndarray  # sorted: an owner's sessions are adjacent and chronological
    start: np.ndarray  # UTC epoch seconds of the first event
    has_login: np.ndarray
    is_engaged: np.ndarray
    engaged_item: np.ndarray  # -1 unless engaged
    engaged_views: np.ndarray  # 0 unless engaged
    first_event: np.ndarray
    n_events: np.ndarray
    platform: np.ndarray
    file: np.ndarray  # index into EVENT_FILES (set by _assign_event_files)

    def __len__(self) -> int:
        return len(self.owner)

    def ids(self, index: np.ndarray) -> pa.Array:
        return _hex_ids(index, "sess_", _SALT_SESSION)


@dataclass
class _Events:
    """One row per true event, in session order; strings are rendered per file and chunk."""

    session: np.ndarray
    owner: np.ndarray
    event_type: np.ndarray
    item: np.ndarray  # -1 = none
    rating: np.ndarray  # 1-5 for rate events, else 0
    quantity: np.ndarray  # 0 = none
    at: np.ndarray  # true UTC epoch seconds
    offset: np.ndarray  # UTC offset of the owner's time zone at `at`
    has_user_id: np.ndarray
    has_anonymous_id: np.ndarray
    path_kind: np.ndarray  # PATH_*
    path_ref: np.ndarray  # static page index, or the item behind a product/search/category page
    referrer_kind: np.ndarray  # REFERRER_* or an index into EXTERNAL_REFERRERS

    def __len__(self) -> int:
        return len(self.session)

    @staticmethod
    def ids(index: np.ndarray) -> pa.Array:
        return _uuid_ids(index, _SALT_EVENT_HIGH, _SALT_EVENT_LOW)


def _customer_spells(
    rng: np.random.Generator, owners: _Owners, days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user: the part of their spell as a customer inside the window (from, until; days
    since the window's start) and how many sessions they have in it.

    A user is an active customer for one spell, exponential and longer the higher their
    shopping propensity; spells begin at any time, so some began before the window, some end
    inside it (churn), some after it. Short spells are intense (a need, met in a few busy
    days): a day of the spell has visit_rate x (MEAN_LIFETIME_DAYS / lifetime) ^ (1 -
    SPELL_VISIT_EXPONENT) visits on average, and the window sees a Poisson number of visits in
    its part of the spell. The users in the data are the ones seen at least once, so a spell
    without a visit in the window is drawn again (at most SPELL_DRAWS times, then one visit):
    every day of the window has about as many active users, with no pile-up at its edges.
    """
    n = owners.n_users
    propensity = owners.shopping_propensity[:n]
    lifetime = MIN_LIFETIME_DAYS + rng.exponential(
        MEAN_LIFETIME_DAYS * np.exp(PROPENSITY_LIFETIME_EFFECT * propensity)
    )
    daily = owners.visit_rate[:n] * (MEAN_LIFETIME_DAYS / lifetime) ** (1 - SPELL_VISIT_EXPONENT)
    active_from, active_until = np.zeros(n), np.zeros(n)
    n_sessions = np.ones(n, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(SPELL_DRAWS):
        begin = days - rng.random(len(todo)) * (days + lifetime[todo])
        active_from[todo] = np.clip(begin, 0.0, days)
        active_until[todo] = np.clip(begin + lifetime[todo], 0.0, days)
        visits = rng.poisson(daily[todo] * (active_until[todo] - active_from[todo]))
        n_sessions[todo] = np.maximum(visits, 1)
        todo = todo[visits == 0]
        if not len(todo):
            break
    return active_from, active_until, n_sessions


def _make_sessions(
    rng: np.random.Generator, owners: _Owners, catalog: _Catalog, days: int, window_start: int
) -> tuple[_Sessions, dict[str, np.ndarray]]:
    """Sessions and their shape; returns the per-session plan that _make_events expands."""
    n_owners, n_users = owners.n_owners, owners.n_users
    is_user = np.arange(n_owners) < n_users
    # While and how often: users during their spell as customers (see _customer_spells),
    # visitors 1 + Poisson(0.4) times over the whole window. Engaged shoppers need >= 2.
    active_from, active_until = np.zeros(n_owners), np.full(n_owners, float(days))
    n_sessions = 1 + rng.poisson(0.4, n_owners)
    spells = _customer_spells(rng, owners, days)
    active_from[:n_users], active_until[:n_users], n_sessions[:n_users] = spells
    active_days = active_until - active_from
    n_sessions = np.where(owners.is_engaged, np.maximum(n_sessions, 2), n_sessions)
    owner = np.repeat(np.arange(n_owners, dtype=np.int32), n_sessions)
    n = len(owner)
    persona = owners.persona[owner]
    first_of_owner = np.r_[True, owner[1:] != owner[:-1]]

    # When: shopping missions. The n sessions of an owner split their active span by n + 1
    # gaps, each a short return or a long pause; a run of sessions joined by short returns is
    # one mission, which tends to end in a purchase (see has_purchase). The gap after the last
    # session of a user who lapses inside the window is a long pause: that mission is over.
    gap_owner = np.repeat(np.arange(n_owners, dtype=np.int32), n_sessions + 1)
    first_gap = np.r_[0, np.cumsum(n_sessions + 1)[:-1]]
    last_gap = first_gap + n_sessions
    is_short = rng.random(len(gap_owner)) < RETURN_VISIT_SHARE
    is_short[last_gap[active_until < days]] = False
    gap = rng.exponential(np.where(is_short, 1.0, LONG_PAUSE_TO_RETURN_RATIO))
    gap_sum = np.cumsum(gap)
    gap_sum -= np.repeat(gap_sum[first_gap] - gap[first_gap], n_sessions + 1)
    is_session_gap = np.ones(len(gap_owner), dtype=bool)
    is_session_gap[last_gap] = False
    span = gap_sum / gap_sum[last_gap][gap_owner]
    position = (active_from[gap_owner] + span * active_days[gap_owner])[is_session_gap]
    day = np.minimum(position.astype(np.int64), days - 1)
    mission_goes_on = is_short[np.flatnonzero(is_session_gap) + 1]  # a return follows
    is_return = is_short[is_session_gap] & ~first_of_owner  # follows a visit of the mission
    del gap_owner, first_gap, last_gap, is_short, gap, gap_sum, span, is_session_gap, position

    # At a local time of day from the persona's habits.
    slot = _choose_from_cumulative(rng, _persona_cumulative("time_of_day_mix")[persona])
    hours = np.array(TIME_OF_DAY_LOCAL_HOURS)[slot]
    local_start = (
        window_start
        + day * 86400
        + hours[:, 0] * 3600
        + (rng.random(n) * (hours[:, 1] - hours[:, 0]) * 3600).astype(np.int64)
    )
    start = local_start - _utc_offsets(local_start, owners.region[owner])
    start = start[np.lexsort((start, owner))]  # chronological within each owner

    # Anonymous starts: every visitor; anonymous browsers always in their first session (which
    # has a login, so the anonymous id can be stitched) and sometimes later.
    visitor = ~is_user[owner]
    starts_anonymous = visitor | (
        owners.is_anonymous_browser[owner] & (first_of_owner | (rng.random(n) < 0.4))
    )
    has_login = starts_anonymous & ~visitor & (first_of_owner | (rng.random(n) < 0.75))

    # The planted engaged session: one later session of each engaged shopper, logged in.
    engaged_owners = np.flatnonzero(owners.is_engaged)
    later = 1 + (rng.random(len(engaged_owners)) * (n_sessions[engaged_owners] - 1)).astype(int)
    is_engaged = np.zeros(n, dtype=bool)
    is_engaged[np.flatnonzero(first_of_owner)[engaged_owners] + later] = True
    starts_anonymous &= ~is_engaged
    has_login &= ~is_engaged
    engaged_views = np.where(is_engaged, rng.integers(4, 7, n), 0).astype(np.int8)
    preferred = PERSONA_PREFERRED[persona]
    engaged_item = np.where(is_engaged, _draw_items(rng, preferred, catalog, 1.0), -1)

    # Shape: a landing page view, browsing events, an optional login, then the cart funnel.
    # Keen shoppers browse deeper and fill (and abandon) more carts. Within a mission, visits
    # before the last one fill carts and rarely buy; the last visit of a mission buys most.
    propensity = owners.shopping_propensity[owner]
    n_browsing = (
        1 + rng.poisson(2.4 * np.exp(PROPENSITY_BROWSING_EFFECT * propensity)) + engaged_views
    )
    identified_at_end = ~starts_anonymous | has_login
    purchase_lift = np.where(
        mission_goes_on, MISSION_OPENING_LIFT, np.where(is_return, MISSION_CLOSING_LIFT, 1.0)
    )
    purchase_chance = np.minimum(owners.purchase_rate[owner] * purchase_lift, 0.95)
    has_purchase = identified_at_end & (rng.random(n) < purchase_chance)
    cart_chance = (
        ABANDONED_CART_BASE
        + ABANDONED_CART_PER_PURCHASE_RATE * owners.purchase_rate[owner]
        + mission_goes_on * MISSION_OPENING_CART_LIFT
    )
    has_cart = has_purchase | (rng.random(n) < cart_chance)
    checkout_chance = (
        ABANDONED_CHECKOUT_BASE
        + ABANDONED_CHECKOUT_PER_PURCHASE_RATE * owners.purchase_rate[owner]
        + mission_goes_on * MISSION_OPENING_CHECKOUT_LIFT
    )
    has_checkout = has_purchase | (has_cart & (rng.random(n) < checkout_chance))
    has_remove = has_cart & ~has_purchase & (rng.random(n) < 0.35)
    cart_item = np.where(is_engaged, engaged_item, _draw_items(rng, preferred, catalog))
    cart_quantity = 1 + (rng.random(n) < 0.25) + (rng.random(n) < 0.08)
    login_position = np.where(has_login, 1 + (rng.random(n) * n_browsing).astype(np.int64), -1)
    n_events = 1 + n_browsing + has_login + has_cart + has_remove + has_checkout + has_purchase

    # Platform: mostly the owner's usual one; a few sessions on unmapped devices.
    persona_device = _choose_from_cumulative(rng, _persona_cumulative("device_mix")[persona])
    other_platform = _choose_from_cumulative(rng, _platform_choice_table()[persona_device])
    platform = np.where(rng.random(n) < 0.75, owners.primary_platform[owner], other_platform)
    unmapped = np.flatnonzero([p.device == "other" for p in PLATFORMS])
    on_unmapped = rng.random(n) < UNMAPPED_DEVICE_SHARE
    on_unmapped[rng.integers(0, n)] = True  # at least one, however small the data
    platform[on_unmapped] = unmapped[rng.integers(0, len(unmapped), int(on_unmapped.sum()))]

    sessions = _Sessions(
        owner=owner,
        start=start,
        has_login=has_login,
        is_engaged=is_engaged,
        engaged_item=engaged_item.astype(np.int32),
        engaged_views=engaged_views,
        first_event=np.r_[0, np.cumsum(n_events)[:-1]].astype(np.int64),
        n_events=n_events.astype(np.int32),
        platform=platform.astype(np.int8),
        file=np.zeros(n, dtype=np.int8),
    )
    plan = {
        "n_sessions": n_sessions,
        "first_of_owner": first_of_owner,
        "starts_anonymous": starts_anonymous,
        "login_position": login_position,
        "n_browsing": n_browsing,
        "has_cart": has_cart,
        "has_remove": has_remove,
        "has_checkout": has_checkout,
        "has_purchase": has_purchase,
        "cart_item": cart_item,
        "cart_quantity": cart_quantity,
        "preferred": preferred,
    }
    return sessions, plan


def _make_events(
    rng: np.random.Generator, owners: _Owners, catalog: _Catalog, sessions: _Sessions, plan: dict
) -> _Events:
    """Expand the session plans into events (types, items, values, identities, times, pages)."""
    n = len(sessions)
    n_events, first_event = sessions.n_events, sessions.first_event
    total = int(n_events.sum())
    session = np.repeat(np.arange(n, dtype=np.int32), n_events)
    position = (np.arange(total) - first_event[session]).astype(np.int32)
    login_at = plan["login_position"][session]
    n_browsing = plan["n_browsing"][session]
    is_login = position == login_at
    base = position - ((login_at >= 0) & (position > login_at))  # the position without login
    browsing = (base >= 1) & (base <= n_browsing) & ~is_login
    funnel = (base > n_browsing) & ~is_login
    preferred = plan["preferred"]

    event_type = np.full(total, PAGE_VIEW, dtype=np.int8)
    event_type[is_login] = LOGIN
    browse_rows = np.flatnonzero(browsing)
    browse_codes = np.array(list(BROWSING_TYPE_SHARES), dtype=np.int8)
    browse_cumulative = np.cumsum(list(BROWSING_TYPE_SHARES.values()))
    drawn = np.searchsorted(
        browse_cumulative, rng.random(len(browse_rows)) * browse_cumulative[-1], side="right"
    )
    event_type[browse_rows] = browse_codes[np.minimum(drawn, len(browse_codes) - 1)]
    del browse_rows, drawn
    # Funnel: the j-th funnel event is the j-th present step of cart, remove, checkout, buy.
    funnel_rows = np.flatnonzero(funnel)
    s = session[funnel_rows]
    step = base[funnel_rows] - n_browsing[funnel_rows]
    present = np.column_stack(
        [
            plan["has_cart"][s],
            plan["has_remove"][s],
            plan["has_checkout"][s],
            plan["has_purchase"][s],
        ]
    )
    nth_present = np.argmax(np.cumsum(present, axis=1) == step[:, None], axis=1)
    funnel_codes = np.array([ADD_TO_CART, REMOVE_FROM_CART, BEGIN_CHECKOUT, PURCHASE], np.int8)
    event_type[funnel_rows] = funnel_codes[nth_present]
    del funnel_rows, s, step, present, nth_present

    # Identity: anonymous until the login event (which carries both ids), user_id after it.
    anonymous_phase = plan["starts_anonymous"][session] & (
        ~sessions.has_login[session] | (position <= login_at)
    )
    owner = sessions.owner[session]
    has_user_id = (owner < owners.n_users) & (~anonymous_phase | is_login)
    event_type[(event_type == RATE) & ~has_user_id] = VIEW_PRODUCT  # ratings need an account
    del login_at, is_login

    # Planted engaged views: the session's item on n random browsing slots.
    engaged_rows = np.flatnonzero(browsing & sessions.is_engaged[session])
    engaged_rows = engaged_rows[np.lexsort((rng.random(len(engaged_rows)), session[engaged_rows]))]
    rank = _rank_within_sorted_groups(session[engaged_rows])
    planted = engaged_rows[rank < sessions.engaged_views[session[engaged_rows]]]
    event_type[planted] = VIEW_PRODUCT

    # Items: product-ish browsing follows the persona's taste; the last browsing slot of a cart
    # session shows the product that then goes into the cart.
    item = np.full(total, -1, dtype=np.int32)
    product_like = [VIEW_PRODUCT, RATE, CLICK_RECOMMENDATION, HOVER, SEARCH]
    needs_item = np.flatnonzero(browsing & np.isin(event_type, product_like))
    item[needs_item] = _draw_items(rng, preferred[session[needs_item]], catalog)
    del needs_item
    shows_cart_item = (
        browsing & (base == n_browsing) & plan["has_cart"][session] & ~sessions.is_engaged[session]
    )
    event_type[shows_cart_item] = VIEW_PRODUCT
    item[shows_cart_item] = plan["cart_item"][session[shows_cart_item]]
    del shows_cart_item, base, n_browsing, browsing
    item[planted] = sessions.engaged_item[session[planted]]
    in_funnel = np.flatnonzero(funnel)
    item[in_funnel] = plan["cart_item"][session[in_funnel]]
    quantity = np.zeros(total, dtype=np.int8)
    quantity[in_funnel] = plan["cart_quantity"][session[in_funnel]]
    search = event_type == SEARCH
    search_item = np.where(search, item, -1)
    item[search] = -1

    # Cap ordinary views: only planted sessions view one item more than 3 times per session.
    is_planted = np.zeros(total, dtype=bool)
    is_planted[planted] = True
    views = np.flatnonzero((event_type == VIEW_PRODUCT) & ~is_planted)
    del is_planted
    clash = item[views] == sessions.engaged_item[session[views]]
    key = session[views].astype(np.int64) * (len(catalog.price) + 1) + item[views]
    order = np.argsort(key, kind="stable")
    occurrence = np.empty(len(views), dtype=np.int64)
    occurrence[order] = _rank_within_sorted_groups(key[order])
    demoted = views[clash | (occurrence >= MAX_ORDINARY_VIEWS)]
    event_type[demoted] = PAGE_VIEW  # a page view of the item's category page instead
    demoted_item = item[demoted]
    item[demoted] = -1
    del views, clash, key, order, occurrence

    # Ratings: higher in the rater's preferred categories.
    rating = np.zeros(total, dtype=np.int8)
    rates = np.flatnonzero(event_type == RATE)
    rated = catalog.category[item[rates]]
    likes = (rated == preferred[session[rates], 0]) | (rated == preferred[session[rates], 1])
    liked, neutral = np.cumsum([2, 5, 13, 35, 45]), np.cumsum([10, 20, 30, 25, 15])
    rating[rates] = 1 + _choose_from_cumulative(rng, np.where(likes[:, None], liked, neutral))

    # Time: events minutes apart; sessions of one owner at least SESSION_GAP_SECONDS apart.
    gap = np.clip(np.round(rng.exponential(70.0, total)), 4, MAX_GAP_IN_SESSION_SECONDS)
    gap[first_event] = 0
    within = np.cumsum(gap).astype(np.int64)
    del gap
    within -= np.repeat(within[first_event], n_events)
    duration = within[first_event + n_events - 1]
    # new_start[i] = max(start[i], new_start[i-1] + duration[i-1] + gap) within an owner. With
    # S[i] = the owner's earlier (duration + gap) summed, new_start - S is the running maximum
    # of start - S: a per-owner cummax, done globally by lifting each owner by a huge offset.
    spacing = duration + SESSION_GAP_SECONDS
    before = np.cumsum(spacing) - spacing
    before -= np.repeat(before[plan["first_of_owner"]], plan["n_sessions"])
    lift = sessions.owner.astype(np.int64) << 40
    sessions.start = np.maximum.accumulate(sessions.start - before + lift) - lift + before
    at = sessions.start[session] + within
    del within

    # Pages: a kind and a reference per event, resolved to URLs when a file is rendered.
    path_kind = np.full(total, PATH_STATIC, dtype=np.int8)
    path_kind[np.isin(event_type, [VIEW_PRODUCT, ADD_TO_CART, HOVER, RATE])] = PATH_PRODUCT
    path_kind[event_type == CLICK_RECOMMENDATION] = PATH_RECOMMENDED_PRODUCT
    path_kind[search] = PATH_SEARCH
    path_kind[event_type == LOGIN] = PATH_LOGIN
    path_kind[event_type == REMOVE_FROM_CART] = PATH_CART
    path_kind[event_type == BEGIN_CHECKOUT] = PATH_CHECKOUT
    path_kind[event_type == PURCHASE] = PATH_CONFIRMATION
    path_ref = np.where(search, search_item, item).astype(np.int32)
    del search, search_item
    static = np.flatnonzero(path_kind == PATH_STATIC)
    path_ref[static] = rng.integers(0, len(STATIC_PAGES), len(static))
    to_category = static[rng.random(len(static)) < 0.3]  # a favourite category's page
    path_kind[to_category] = PATH_CATEGORY
    path_ref[to_category] = _draw_items(rng, preferred[session[to_category]], catalog, 1.0)
    path_kind[demoted] = PATH_CATEGORY
    path_ref[demoted] = demoted_item
    referrer_kind = np.full(total, REFERRER_PREVIOUS_PAGE, dtype=np.int8)
    referrer_kind[first_event] = rng.integers(0, len(EXTERNAL_REFERRERS) + 2, n)
    referrer_kind[referrer_kind >= len(EXTERNAL_REFERRERS)] = REFERRER_NONE  # direct visits

    return _Events(
        session=session,
        owner=owner,
        event_type=event_type,
        item=item,
        rating=rating,
        quantity=quantity,
        at=at,
        offset=_utc_offsets(at, owners.region[owner]),
        has_user_id=has_user_id,
        has_anonymous_id=anonymous_phase,
        path_kind=path_kind,
        path_ref=path_ref,
        referrer_kind=referrer_kind,
    )


# ---------------------------------------------------------------------------------------------
# Events files: which file gets which session, re-deliveries, spellings, rendering, broken rows
# ---------------------------------------------------------------------------------------------


def _spelling_table() -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """All raw spellings, and per (event type, style) where its spellings start, how many."""
    spellings: list[str] = []
    start = np.zeros((len(EVENT_TYPES), len(SPELLING_STYLES)), dtype=np.int64)
    count = np.zeros_like(start)
    for code, name in enumerate(EVENT_TYPES):
        known = name not in UNMAPPED_EVENT_TYPE_SPELLINGS
        by_style = {
            "snake": (name,),
            "camel": ("".join(w.title() for w in name.split("_")),),
            "alias": EVENT_TYPE_ALIASES[name],
            "upper": (name.upper(),) if known else (name,),
            "kebab": (name.replace("_", "-"),),
        }
        for style_index, style in enumerate(SPELLING_STYLES):
            start[code, style_index], count[code, style_index] = (
                len(spellings),
                len(by_style[style]),
            )
            spellings.extend(by_style[style])
    return _strings(spellings), start, count


@dataclass
class _Delivery:
    origin: np.ndarray  # per event: the file its session went to
    redelivered: np.ndarray  # events delivered a second time ...
    target: np.ndarray  # ... into this other file
    spellings: pa.Array
    spelling: np.ndarray  # per event: index into spellings (copies keep it)


def _assign_event_files(rng, sessions: _Sessions, events: _Events, owners: _Owners) -> _Delivery:
    """Whole sessions go to one file; the CSV (naive local time) never gets a DST-ambiguous one."""
    shares = np.array([f.session_share for f in EVENT_FILES])
    file = rng.choice(len(EVENT_FILES), size=len(sessions), p=shares / shares.sum())
    local = events.at + events.offset
    ambiguous = _is_ambiguous_local_time(local, owners.region[events.owner])
    session_ambiguous = np.zeros(len(sessions), dtype=bool)
    session_ambiguous[events.session[ambiguous]] = True
    file[(file == STORE) & session_ambiguous] = WEB
    sessions.file = file.astype(np.int8)
    origin = sessions.file[events.session]

    # Re-deliveries: ~2% of events once more, same event_id and content, in another file.
    # Never into the Parquet file (no session_id column), never DST-ambiguous into the CSV.
    redelivered = np.flatnonzero(rng.random(len(events)) < REDELIVERY_SHARE)
    allowed = np.ones((len(redelivered), len(EVENT_FILES)), dtype=bool)
    allowed[np.arange(len(redelivered)), origin[redelivered]] = False
    allowed[:, WAREHOUSE] = False
    allowed[:, STORE] &= ~ambiguous[redelivered]
    target = np.argmax(rng.random(allowed.shape) * allowed, axis=1)

    # Spellings follow the habits of the file the event was first delivered in.
    spellings, spelling_start, spelling_count = _spelling_table()
    spelling = np.empty(len(events), dtype=np.int32)
    for index, file_spec in enumerate(EVENT_FILES):
        rows = np.flatnonzero(origin == index)
        mix = np.cumsum(file_spec.spelling_style_mix)
        style = np.searchsorted(mix, rng.random(len(rows)) * mix[-1], side="right")
        style = np.minimum(style, len(SPELLING_STYLES) - 1)
        code = events.event_type[rows].astype(np.int64)
        variant = (rng.random(len(rows)) * spelling_count[code, style]).astype(np.int64)
        spelling[rows] = spelling_start[code, style] + variant
    return _Delivery(origin, redelivered, target.astype(np.int8), spellings, spelling)


class _EventRenderer:
    """Renders event rows (originals and re-delivered copies) in one file's conventions."""

    def __init__(self, owners, catalog, sessions, events, delivery):
        self.owners, self.catalog, self.sessions = owners, catalog, sessions
        self.events, self.delivery = events, delivery
        nouns = pc.utf8_lower(catalog.noun)
        self.search_terms = pc.replace_substring(nouns, " ", "+")
        self.search_queries = nouns
        slugs = _strings([c.replace("_", "-") for c in ALL_CATEGORIES])
        self.category_slugs = _take(slugs, catalog.category)
        self.timezones = _strings([r.timezone for r in REGIONS])

    def paths(self, rows: np.ndarray) -> pa.Array:
        kind = self.events.path_kind[rows].astype(np.int64)
        ref = self.events.path_ref[rows]
        product = (kind == PATH_PRODUCT) | (kind == PATH_RECOMMENDED_PRODUCT)
        middle = pc.coalesce(
            _take(_strings(STATIC_PAGES), ref, kind == PATH_STATIC),
            _take(self.catalog.item_ids, ref, product),
            _take(self.search_terms, ref, kind == PATH_SEARCH),
            _take(self.category_slugs, ref, kind == PATH_CATEGORY),
            _literal(""),
        )
        prefix, suffix = _take(_strings(PATH_PREFIXES), kind), _take(_strings(PATH_SUFFIXES), kind)
        return _join(SITE, prefix, middle, suffix)

    def table(self, rows: np.ndarray, file: EventFile) -> pa.Table:
        ev, owners = self.events, self.owners
        owner, item, event_type = ev.owner[rows], ev.item[rows], ev.event_type[rows]
        carries_session = CARRIES_SESSION_ID[self.delivery.origin[rows]] & file.carries_session_id
        referrer_kind = ev.referrer_kind[rows]
        value = np.full(len(rows), np.nan)
        buy = event_type == PURCHASE
        value[buy] = np.round(self.catalog.price[item[buy]] * ev.quantity[rows][buy], 2)
        rate = event_type == RATE
        value[rate] = ev.rating[rows][rate]
        quantity = ev.quantity[rows].astype(np.int32)
        columns = {
            "event_id": ev.ids(rows),
            "event_type": _take(self.delivery.spellings, self.delivery.spelling[rows]),
            **self.timestamps(rows, file),
            "user_id": _take(
                owners.user_ids, np.minimum(owner, owners.n_users - 1), ev.has_user_id[rows]
            ),
            "anonymous_id": _take(owners.anonymous_ids, owner, ev.has_anonymous_id[rows]),
            "session_id": _null_where(self.sessions.ids(ev.session[rows]), ~carries_session),
            "item_id": _take(self.catalog.item_ids, item, item >= 0),
            "value": pa.array(value, from_pandas=True),
            "quantity": pa.array(quantity, mask=quantity == 0),
            "page_url": self.paths(rows),
            "referrer": pc.if_else(
                pa.array(referrer_kind == REFERRER_PREVIOUS_PAGE),
                self.paths(np.maximum(rows - 1, 0)),  # the previous event of the same session
                _take(_strings(EXTERNAL_REFERRERS), referrer_kind, referrer_kind >= 0),
            ),
        }
        if not file.carries_session_id:
            del columns["session_id"]
        if file.key == "web":  # search events carry a JSON `properties` object
            searches = event_type == SEARCH
            query = _take(self.search_queries, ev.path_ref[rows], searches)
            columns["properties"] = _join('{"query":"', _json_escaped(query), '"}')
        if file.key == "app":  # a column outside the contract: the pipeline keeps it in `extra`
            version = (_hash_fraction(rows, _SALT_APP_VERSION) * len(APP_VERSIONS)).astype(int)
            columns["app_version"] = _take(_strings(APP_VERSIONS), version)
            columns["value"] = pc.cast(columns["value"], STRING)  # numbers as JSON strings
            columns["quantity"] = pc.cast(columns["quantity"], STRING)
        return pa.table(columns)

    def timestamps(self, rows: np.ndarray, file: EventFile) -> dict[str, pa.Array]:
        at, offset = self.events.at[rows], self.events.offset[rows]
        encoding = file.timestamp_encoding
        if encoding.startswith("iso8601"):
            local = _timestamp_text(at, "iso_offset", offset)
            utc_share = 0.1 if encoding == "iso8601_local_offset_or_z" else 0.5
            utc_style = "iso_z" if encoding == "iso8601_local_offset_or_z" else "iso_z_millis"
            in_utc = _hash_fraction(rows, _SALT_UTC_CHOICE) < utc_share
            return {"timestamp": _where(in_utc, _timestamp_text(at, utc_style), local)}
        if encoding == "naive_local_plus_timezone_column":
            region = self.owners.region[self.events.owner[rows]]
            return {
                "timestamp": _timestamp_text(at, "naive", offset),
                "timezone": _take(self.timezones, region),
            }
        if encoding == "epoch_milliseconds_int64":
            return {"timestamp": pa.array(at * 1000, type=pa.int64())}
        if encoding == "epoch_seconds_string":
            return {"timestamp": _as_text(at)}
        raise ValueError(encoding)


_EVENT_NUMBERS = frozenset({"value", "quantity", "properties"})
EVENT_JSON_STYLES = {
    "web": JsonStyle(literal_columns=_EVENT_NUMBERS, generated_text=True),
    "app": JsonStyle(omit_nulls=True, generated_text=True),  # numbers as strings, keys left out
    "legacy": JsonStyle(literal_columns=_EVENT_NUMBERS, generated_text=True),
}
CONSENT_LOG_STYLE = JsonStyle(literal_columns=frozenset({"granted"}), generated_text=True)


def _broken_event_lines(fresh_ids: list[str], user_id: str, iso: str, naive: str) -> dict:
    """The planted broken rows per file key: (raw line, reason, event_id or None)."""
    compact = {"separators": (",", ":")}
    no_id = {"event_type": "page_view", "timestamp": iso, "user_id": user_id, "page_url": SITE}
    bad_time = {"event_id": fresh_ids[2], "event_type": "page_view", "timestamp": "not-a-time"}
    bad_time |= {"user_id": user_id, "page_url": SITE}
    truncated = f'{{"event_id":"{fresh_ids[0]}","event_type":"page_view","timestamp":"{iso[:12]}'
    python_repr = f"{{'event_id': '{fresh_ids[1]}', 'event_type': 'search', user_id: {user_id}}}"
    too_many = [fresh_ids[3], "page_view", naive, "Europe/Berlin", user_id, "", "", "", "", ""]
    too_many += [SITE, "", "unexpected_extra_field"]
    return {
        "web": [
            (truncated, "malformed_json: truncated line", fresh_ids[0]),
            (python_repr, "malformed_json: single quotes and an unquoted key", fresh_ids[1]),
            (json.dumps(no_id, **compact), "missing_event_id", None),
            (json.dumps(bad_time, **compact), "unparseable_timestamp: not-a-time", fresh_ids[2]),
        ],
        "store": [(",".join(too_many), "wrong_number_of_fields: 13 instead of 12", fresh_ids[3])],
    }


def _write_events(raw: Path, renderer: _EventRenderer) -> dict:
    events, delivery = renderer.events, renderer.delivery
    fresh_ids = events.ids(np.arange(len(events), len(events) + 4)).to_pylist()  # not events
    sample = events.at[:1]
    broken_by_file = _broken_event_lines(
        fresh_ids,
        renderer.owners.user_ids[0].as_py(),
        _timestamp_text(sample, "iso_z")[0].as_py(),
        _timestamp_text(sample, "naive")[0].as_py(),
    )

    def write_file(index: int) -> tuple[dict, list[dict]]:
        file = EVENT_FILES[index]
        copies = delivery.redelivered[delivery.target == index]
        rows = np.concatenate([np.flatnonzero(delivery.origin == index), copies])
        rows = rows[np.lexsort((rows, events.at[rows]))]  # by time, then event order
        broken = broken_by_file.get(file.key, [])
        positions = _write_rows(
            raw / file.path,
            file.fmt,
            len(rows),
            lambda start, stop: renderer.table(rows[start:stop], file),
            broken_lines=[line for line, _, _ in broken],
            json_style=EVENT_JSON_STYLES.get(file.key, JsonStyle()),
        )
        header_lines = 1 if file.fmt == "csv" else 0
        placed = [
            {
                "file": file.path,
                "line": position,
                "file_line": position + header_lines,
                "reason": reason,
                "event_id": event_id,
            }
            for position, (_, reason, event_id) in zip(positions, broken, strict=True)
        ]
        summary = {
            "path": file.path,
            "format": file.fmt,
            "rows": int(len(rows) + len(broken)),
            "event_rows": int(len(rows)),
            "redelivered_copies": int(len(copies)),
            "broken_rows": len(broken),
            "timestamp_encoding": file.timestamp_encoding,
            "has_session_id": file.carries_session_id,
        }
        return summary, placed

    # Files are independent and rendering needs no random stream, so threads (numpy and pyarrow
    # release the GIL) change nothing in the output, only the wall time.
    with ThreadPoolExecutor(max_workers=WRITER_THREADS) as pool:
        results = list(pool.map(write_file, range(len(EVENT_FILES))))
    files = [summary for summary, _ in results]
    broken_rows = [row for _, placed in results for row in placed]
    return {"files": files, "broken_rows": broken_rows}


# ---------------------------------------------------------------------------------------------
# Context: keyed by session where the events carry session_id, else by event (Parquet events)
# ---------------------------------------------------------------------------------------------

INVALID_COORDINATES = (("latitude", 123.4567), ("latitude", -91.5), ("longitude", -200.25))


def _flat_choice(rng, lists: list[tuple], chooser: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """A pool of all lists' values, and per row a uniform pick from list ``chooser[row]``."""
    counts = np.array([len(v) for v in lists])
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    picks = starts[chooser] + (rng.random(len(chooser)) * counts[chooser]).astype(np.int64)
    return _strings([value for values in lists for value in values]), picks.astype(np.int32)


def _write_context(
    raw: Path,
    rng,
    owners: _Owners,
    sessions: _Sessions,
    events: _Events,
    delivery: _Delivery,
    pools: _Pools,
) -> dict:
    platform = sessions.platform.astype(np.int64)
    n = len(sessions)
    # Per session (events of one session share their context): spellings, browser, ip.
    device_pool, device_pick = _flat_choice(rng, [p.device_spellings for p in PLATFORMS], platform)
    os_pool, os_pick = _flat_choice(rng, [p.os_spellings for p in PLATFORMS], platform)
    combos = [(p.name, b) for p in PLATFORMS for b, _ in p.browsers]
    browser_pool = _strings([browser for _, browser in combos])
    agent_pool = _strings([USER_AGENTS[combo] for combo in combos])
    width = max(len(p.browsers) for p in PLATFORMS)
    browser_shares = np.array(
        [[share for _, share in p.browsers] + [0.0] * (width - len(p.browsers)) for p in PLATFORMS]
    )
    browser_start = np.r_[0, np.cumsum([len(p.browsers) for p in PLATFORMS])[:-1]]
    browser = browser_start[platform] + _choose_from_cumulative(
        rng, np.cumsum(browser_shares, axis=1)[platform]
    )
    home = rng.random(n) < 0.7
    ip = np.where(home[:, None], owners.home_ip[sessions.owner], rng.integers(1, 224, (n, 4)))
    country_pool = _strings([r.country_code for r in REGIONS])
    timezone_pool = _strings([r.timezone for r in REGIONS])

    def render(session_index: np.ndarray, key_name: str, keys: pa.Array, planted=()) -> pa.Table:
        m = len(session_index)
        owner = sessions.owner[session_index]
        region, city = owners.region[owner], owners.city[owner]
        octets = ip[session_index]
        dotted = [_as_text(octets[:, k]) for k in range(4)]
        coordinates = {
            "latitude": np.round(pools.city_lat[city] + rng.normal(0, 0.03, m), 4),
            "longitude": np.round(pools.city_lon[city] + rng.normal(0, 0.03, m), 4),
        }
        for values in coordinates.values():
            values[rng.random(m) < 0.03] = np.nan  # missing
        for row, column, value in planted:
            coordinates[column][row] = value
        columns = {
            key_name: keys,
            "device_type": _take(device_pool, device_pick[session_index]),
            "os": _take(os_pool, os_pick[session_index]),
            "browser": _take(browser_pool, browser[session_index]),
            "user_agent": _take(agent_pool, browser[session_index]),
            "ip": _join(dotted[0], ".", dotted[1], ".", dotted[2], ".", dotted[3]),
            "geo_country": _take(country_pool, region),
            "geo_city": _take(pools.city_names, city),
            "latitude": pa.array(coordinates["latitude"], from_pandas=True),
            "longitude": pa.array(coordinates["longitude"], from_pandas=True),
            "timezone": _take(timezone_pool, region),
        }
        for name in ("os", "browser", "user_agent", "geo_city"):
            columns[name] = _null_where(columns[name], rng.random(m) < 0.03)
        return pa.table(columns)

    by_session = np.flatnonzero(CARRIES_SESSION_ID[sessions.file])
    by_event = np.flatnonzero(~CARRIES_SESSION_ID[delivery.origin])
    session_csv = rng.random(len(by_session)) < 0.6
    event_parquet = rng.random(len(by_event)) < 0.7
    first_csv_rows = int(min(session_csv.sum(), CHUNK_ROWS))
    invalid = []
    if first_csv_rows >= len(INVALID_COORDINATES):
        rows = rng.choice(first_csv_rows, size=len(INVALID_COORDINATES), replace=False)
        invalid = [(int(r), *cv) for r, cv in zip(np.sort(rows), INVALID_COORDINATES, strict=True)]
    outputs = (
        ("context/web_sessions.csv", "session_id", by_session[session_csv]),
        ("context/app_sessions.parquet", "session_id", by_session[~session_csv]),
        ("context/store_events.parquet", "event_id", by_event[event_parquet]),
        ("context/store_events_late.csv", "event_id", by_event[~event_parquet]),
    )
    files, invalid_values = [], []
    for path, key_name, subset in outputs:
        plant = invalid if path == "context/web_sessions.csv" else []

        def render_chunk(start, stop, subset=subset, key_name=key_name, plant=plant):
            rows = subset[start:stop]
            if key_name == "session_id":
                session_index, keys = rows, sessions.ids(rows)
            else:
                session_index, keys = events.session[rows], events.ids(rows)
            planted = [(r - start, c, v) for r, c, v in plant if start <= r < stop]
            return render(session_index, key_name, keys, planted)

        _write_rows(raw / path, path.rsplit(".", 1)[1], len(subset), render_chunk)
        fmt = path.rsplit(".", 1)[1]
        files.append({"path": path, "format": fmt, "rows": len(subset), "key": key_name})
        for row, column, value in plant:
            invalid_values.append(
                {
                    "file": path,
                    "line": row + 1,
                    "session_id": sessions.ids(subset[row : row + 1])[0].as_py(),
                    "column": column,
                    "value": value,
                }
            )
    unmapped = [p for p in PLATFORMS if p.device == "other"]
    unmapped_codes = [PLATFORMS.index(p) for p in unmapped]
    return {
        "files": files,
        "invalid_values": invalid_values,
        "sessions_on_unmapped_devices": int(np.isin(platform, unmapped_codes).sum()),
        "unmapped_device_spellings": [s for p in unmapped for s in p.device_spellings],
        "unmapped_os_spellings": [s for p in unmapped for s in p.os_spellings],
    }


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------


def _write_catalog(raw: Path, rng, catalog: _Catalog) -> dict:
    """Most items in a CSV, the newest ones in a Parquet file (typed price and booleans)."""
    table = catalog.table
    new_arrivals = rng.random(table.num_rows) < 0.10
    new_arrivals[-1] = True
    main, extra = table.filter(pa.array(~new_arrivals)), table.filter(pa.array(new_arrivals))
    _write_table(raw / "catalog/items.csv", "csv", main)
    _write_table(raw / "catalog/items_new_arrivals.parquet", "parquet", extra)
    category = np.array(ALL_CATEGORIES)[catalog.category]
    return {
        "files": [
            {"path": "catalog/items.csv", "format": "csv", "rows": main.num_rows},
            {
                "path": "catalog/items_new_arrivals.parquet",
                "format": "parquet",
                "rows": extra.num_rows,
            },
        ],
        "items_per_category": {c: int((category == c).sum()) for c in ALL_CATEGORIES},
        "unmapped_category_spellings": list(CATEGORY_SPELLINGS[UNMAPPED_CATEGORY]),
        "out_of_stock": int(pc.sum(pc.invert(table["in_stock"])).as_py()),
        "curated": int(pc.sum(table["is_curated"]).as_py()),
    }


# ---------------------------------------------------------------------------------------------
# Profiles: two CRM systems, overlapping people, duplicates with typos, junk, impossible values
# ---------------------------------------------------------------------------------------------


@dataclass
class _People:
    """One true person per user: the clean values every CRM record of them is derived from."""

    first_name: pa.Array
    first_name_typo: pa.Array
    last_name: pa.Array
    last_name_typo: pa.Array
    gender: np.ndarray  # 0 female, 1 male, 2 diverse
    email: pa.Array  # unique per person
    phone_country: pa.Array
    phone_area: pa.Array
    phone_exchange: pa.Array
    phone_line: pa.Array  # exchange + line are unique per person
    address: pa.Array
    city: pa.Array
    postcode: pa.Array
    region_name: pa.Array
    birth_date: np.ndarray  # datetime64[D]
    age: np.ndarray  # on end_date
    signup_at: np.ndarray  # epoch seconds
    updated_at: np.ndarray


def _age_on(birth: np.ndarray, day: np.datetime64) -> np.ndarray:
    def parts(dates: np.ndarray):
        months = dates.astype("datetime64[M]")
        day_of_month = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
        year = dates.astype("datetime64[Y]").astype(np.int64) + 1970
        return year, months.astype(np.int64) % 12 + 1, day_of_month

    year, month, dom = parts(birth)
    on_year, on_month, on_dom = (v[0] for v in parts(np.array([day])))
    before_birthday = (on_month < month) | ((on_month == month) & (on_dom < dom))
    return on_year - year - before_birthday


def _make_people(rng, owners: _Owners, pools: _Pools, end_day: np.datetime64, window_start: int):
    n = owners.n_users
    region = owners.region[:n]
    locale = np.array([LOCALES.index(r.faker_locale) for r in REGIONS])[region]
    gender = np.where(rng.random(n) < 0.49, 0, np.where(rng.random(n) < 0.97, 1, 2))
    first_female = pa.array(pools.first_female.draw(rng, locale))
    first_male = pa.array(pools.first_male.draw(rng, locale))
    last = pa.array(pools.last.draw(rng, locale))

    def by_gender(female_pool: pa.Array, male_pool: pa.Array) -> pa.Array:
        female = pa.array(gender != 1)
        return pc.if_else(female, female_pool.take(first_female), male_pool.take(first_male))

    # Unique per person by construction: (index * 7919 + c) mod 10^k is a bijection on [0, 10^k).
    digits = max(3, len(str(n)))
    email = _join(
        by_gender(pools.first_female_ascii, pools.first_male_ascii),
        _take(_strings((".", "_", "")), rng.integers(0, 3, n)),
        pools.last_ascii.take(last),
        _as_text((np.arange(n, dtype=np.int64) * 7919 + 123) % 10**digits),
        "@",
        _take(_strings(EMAIL_DOMAINS), rng.integers(0, len(EMAIL_DOMAINS), n)),
    )
    subscriber = (np.arange(n, dtype=np.int64) * 7919 + 4099) % 10**7
    street = pools.streets.values.take(pa.array(pools.streets.draw(rng, locale)))
    birth_date = end_day - (np.clip(rng.normal(40, 13, n), 18, 85) * 365.25).astype(np.int64)
    signup_at = window_start - rng.integers(86400, 3 * 365 * 86400, n)
    return _People(
        first_name=by_gender(pools.first_female.values, pools.first_male.values),
        first_name_typo=by_gender(pools.first_female_typo, pools.first_male_typo),
        last_name=pools.last.values.take(last),
        last_name_typo=pools.last_typo.take(last),
        gender=gender,
        email=email,
        phone_country=_take(_strings([r.phone_country_code for r in REGIONS]), region),
        phone_area=_as_text(rng.integers(201, 990, n)),
        phone_exchange=_padded(subscriber // 10000, 3),
        phone_line=_padded(subscriber % 10000, 4),
        address=_join(_as_text(rng.integers(1, 200, n)), " ", street),
        city=pools.city_names.take(pa.array(owners.city[:n])),
        postcode=pools.postcodes.values.take(pa.array(pools.postcodes.draw(rng, locale))),
        region_name=pools.regions.values.take(pa.array(pools.regions.draw(rng, locale))),
        birth_date=birth_date,
        age=_age_on(birth_date, end_day),
        signup_at=signup_at,
        updated_at=signup_at + (rng.random(n) * (window_start - signup_at)).astype(np.int64),
    )


@dataclass
class _ProfileOutput:
    manifest: dict
    truth: pa.Table
    has_usable_email: np.ndarray  # per user: some record links them by a real email


def _write_profiles(raw: Path, rng, owners: _Owners, people: _People) -> _ProfileOutput:
    n = owners.n_users
    in_a, in_b = rng.random(n) < 0.75, rng.random(n) < 0.55
    twice_a, twice_b = in_a & (rng.random(n) < 0.05), in_b & (rng.random(n) < 0.05)
    groups = (in_a, twice_a, in_b, twice_b)
    sizes = [int(g.sum()) for g in groups]
    person = np.concatenate([np.flatnonzero(g) for g in groups])
    system = np.repeat([0, 0, 1, 1], sizes)
    duplicate = np.repeat([False, True, False, True], sizes)
    order = np.lexsort((rng.random(len(person)), system))  # shuffled within each system
    person, system, duplicate = person[order], system[order], duplicate[order]
    m = len(person)
    number = _rank_within_sorted_groups(system) + 1
    width = max(6, len(str(int(number.max(initial=1)))))
    record_id = _join(_take(_strings(("A-", "B-")), system), _padded(number, width))
    is_b = system == 1

    def chance(in_a_primary: float, in_b_primary: float, in_duplicate: float) -> np.ndarray:
        p = np.where(duplicate, in_duplicate, np.where(is_b, in_b_primary, in_a_primary))
        return rng.random(m) < p

    def of_person(values: pa.Array) -> pa.Array:
        return values.take(pa.array(person))

    first = _where(
        chance(0.01, 0.08, 0.35), of_person(people.first_name_typo), of_person(people.first_name)
    )
    last = _where(
        chance(0.01, 0.08, 0.35), of_person(people.last_name_typo), of_person(people.last_name)
    )
    shout = chance(0.0, 0.15, 0.2)
    first, last = (
        _where(shout, pc.utf8_upper(first), first),
        _where(shout, pc.utf8_upper(last), last),
    )
    email = of_person(people.email)
    email = _where(chance(0.02, 0.15, 0.2), pc.utf8_upper(email), email)
    email = _where(chance(0.02, 0.03, 0.05), _join(email, " "), email)
    # Junk emails: shared by unrelated people, so they must never link two records.
    junk = rng.random(m) < 0.015
    if m >= 2 and junk.sum() < 2:
        junk[rng.choice(m, size=2, replace=False)] = True
    junk_value = np.where(rng.random(m) < 0.5, 0, rng.integers(1, len(JUNK_EMAILS), m))
    junk_value[np.flatnonzero(junk)[:2]] = 0  # at least two records say "test@example.com"
    email = _where(junk, _take(_strings(JUNK_EMAILS), junk_value), email)

    style = np.where(
        is_b, rng.integers(1, 5, m), np.where(rng.random(m) < 0.8, 0, rng.integers(0, 5, m))
    )
    phone = _join(
        _take(_strings(PHONE_PREFIX), style),
        of_person(people.phone_country),
        _take(_strings(PHONE_AFTER_COUNTRY), style),
        of_person(people.phone_area),
        _take(_strings(PHONE_AFTER_AREA), style),
        of_person(people.phone_exchange),
        _take(_strings(PHONE_AFTER_EXCHANGE), style),
        of_person(people.phone_line),
    )
    region = owners.region[person]
    signup = people.signup_at[person]
    updated = people.updated_at[person] + np.where(
        is_b | duplicate, rng.integers(0, 30 * 86400, m), 0
    )

    def stamp(seconds: np.ndarray) -> pa.Array:  # crm_a: local time with offset, crm_b: UTC "Z"
        local = _timestamp_text(seconds, "iso_offset", _utc_offsets(seconds, region))
        return _where(is_b, _timestamp_text(seconds, "iso_z"), local)

    gender = people.gender[person]
    columns = {
        "record_id": record_id,
        "source_system": _take(_strings(SOURCE_SYSTEMS), system),
        "user_id": _take(owners.user_ids, person, chance(0.92, 0.5, 0.4)),
        "email": email,
        "phone": phone,
        "first_name": first,
        "last_name": last,
        "birth_date": pc.cast(pa.array(people.birth_date[person]), STRING),
        "age": pa.array(people.age[person]),
        "gender": _where(
            is_b,
            _take(_strings(GENDER_SPELLINGS[1]), gender),
            _take(_strings(GENDER_SPELLINGS[0]), gender),
        ),
        "address": of_person(people.address),
        "city": of_person(people.city),
        "postcode": of_person(people.postcode),
        "region": of_person(people.region_name),
        "country": _where(
            is_b,
            _take(_strings([r.country_name for r in REGIONS]), region),
            _take(_strings([r.country_code for r in REGIONS]), region),
        ),
        "signup_at": stamp(signup),
        "updated_at": stamp(updated),
    }
    # Missing fields: more often in crm_b and in duplicates; age is often not exported at all.
    for name in ("email", "phone", "address", "postcode", "region", "birth_date", "gender"):
        columns[name] = _null_where(columns[name], chance(0.04, 0.12, 0.2))
    columns["age"] = _null_where(columns["age"], ~chance(0.7, 0.45, 0.4))

    # Impossible values on a few records: they should be nulled and counted, not kill the load.
    impossible = []
    if m >= len(IMPOSSIBLE_BIRTH_DATES) + len(IMPOSSIBLE_AGES):
        chosen = rng.choice(
            m, size=len(IMPOSSIBLE_BIRTH_DATES) + len(IMPOSSIBLE_AGES), replace=False
        )
        birth_rows = np.sort(chosen[: len(IMPOSSIBLE_BIRTH_DATES)])
        age_rows = chosen[len(IMPOSSIBLE_BIRTH_DATES) :]
        birth_mask = np.isin(np.arange(m), birth_rows)
        columns["birth_date"] = pc.replace_with_mask(
            columns["birth_date"], pa.array(birth_mask), _strings(IMPOSSIBLE_BIRTH_DATES)
        )
        ages = columns["age"].to_numpy(zero_copy_only=False).astype(float)
        ages[age_rows] = IMPOSSIBLE_AGES
        columns["age"] = pc.cast(pa.array(ages, from_pandas=True), pa.int64())
        for rows, field, values in (
            (birth_rows, "birth_date", IMPOSSIBLE_BIRTH_DATES),
            (age_rows, "age", IMPOSSIBLE_AGES),
        ):
            for row, value in zip(rows.tolist(), values, strict=True):
                impossible.append(
                    {"record_id": record_id[row].as_py(), "field": field, "value": value}
                )

    table = pa.table(columns)
    crm_a, crm_b = table.filter(pa.array(~is_b)), table.filter(pa.array(is_b))
    _write_table(raw / "profiles/crm_a_customers.csv", "csv", crm_a)
    _write_table(
        raw / "profiles/crm_b_contacts.jsonl",
        "jsonl",
        crm_b,
        json_style=JsonStyle(literal_columns=frozenset({"age"}), omit_nulls=True),
    )
    usable = ~junk & columns["email"].is_valid().to_numpy(zero_copy_only=False)
    has_usable_email = np.zeros(n, dtype=bool)
    has_usable_email[person[usable]] = True
    truth = pa.table(
        {
            "record_id": record_id,
            "source_system": columns["source_system"],
            "true_user_id": owners.user_ids.take(pa.array(person)),
            "is_duplicate_in_system": pa.array(duplicate),
        }
    )
    manifest = {
        "files": [
            {"path": "profiles/crm_a_customers.csv", "format": "csv", "rows": crm_a.num_rows},
            {"path": "profiles/crm_b_contacts.jsonl", "format": "jsonl", "rows": crm_b.num_rows},
        ],
        "people_in_both_systems": int((in_a & in_b).sum()),
        "people_twice_in_one_system": int(twice_a.sum() + twice_b.sum()),
        "impossible_values": impossible,
        "junk_email_records": int(junk.sum()),
        "junk_email_values": sorted(set(email.filter(pa.array(junk)).to_pylist())),
        "gender_spellings": dict(zip(SOURCE_SYSTEMS, GENDER_SPELLINGS, strict=True)),
        "country_encoding": {"crm_a": "ISO 3166-1 alpha-2", "crm_b": "English country name"},
    }
    return _ProfileOutput(manifest, truth, has_usable_email)


# ---------------------------------------------------------------------------------------------
# Consent and erasure
# ---------------------------------------------------------------------------------------------


def _write_consent(
    raw: Path,
    rng,
    owners: _Owners,
    people: _People,
    has_usable_email: np.ndarray,
    window_start: int,
    window_end: int,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Initial grants before the window, revocations and changes inside it."""
    n = owners.n_users
    has_records = rng.random(n) >= 0.03
    by_email = has_usable_email & (rng.random(n) < 0.10)
    granted = rng.random((n, len(CONSENT_PURPOSES))) < np.array(CONSENT_GRANT_RATES)
    personalization = CONSENT_PURPOSES.index("personalization")
    marketing = CONSENT_PURPOSES.index("marketing")
    revokes = has_records & granted[:, personalization] & (rng.random(n) < 0.05)
    flips_marketing = has_records & (rng.random(n) < 0.03)

    def records(user, purpose, value, at) -> pa.Table:
        order = np.lexsort((purpose, user, at))
        user, purpose, value, at = user[order], purpose[order], value[order], at[order]
        email = people.email.take(pa.array(user))
        return pa.table(
            {
                "purpose": _take(_strings(CONSENT_PURPOSES), purpose),
                "user_id": _take(owners.user_ids, user, ~by_email[user]),
                "email": _null_where(email, ~by_email[user]),
                "granted": pa.array(value),
                "recorded_at": _timestamp_text(at, "iso_z"),
                "source": _take(
                    _strings(CONSENT_SOURCES), rng.integers(0, len(CONSENT_SOURCES), len(user))
                ),
            }
        )

    users = np.repeat(np.flatnonzero(has_records), len(CONSENT_PURPOSES))
    purposes = np.tile(np.arange(len(CONSENT_PURPOSES)), int(has_records.sum()))
    initial_at = window_start - rng.integers(86400, 400 * 86400, len(users))
    initial = records(users, purposes, granted[users, purposes], initial_at)
    _write_table(raw / "consent/consent_log.jsonl", "jsonl", initial, json_style=CONSENT_LOG_STYLE)

    revokers, flippers = np.flatnonzero(revokes), np.flatnonzero(flips_marketing)
    change_users = np.concatenate([revokers, flippers])
    change_purposes = np.repeat([personalization, marketing], [len(revokers), len(flippers)])
    change_values = np.concatenate([np.zeros(len(revokers), bool), ~granted[flippers, marketing]])
    window = window_end - window_start - 3600
    change_at = window_start + (rng.random(len(change_users)) * window).astype(np.int64)
    updates = records(change_users, change_purposes, change_values, change_at)
    _write_table(
        raw / "consent/consent_updates.jsonl.gz",
        "jsonl.gz",
        updates,
        json_style=JsonStyle(omit_nulls=True),
    )

    manifest = {
        "files": [
            {"path": "consent/consent_log.jsonl", "format": "jsonl", "rows": initial.num_rows},
            {
                "path": "consent/consent_updates.jsonl.gz",
                "format": "jsonl.gz",
                "rows": updates.num_rows,
            },
        ],
        "users_without_consent_records": int((~has_records).sum()),
        "users_identified_by_email": int((has_records & by_email).sum()),
        "granted_encoding": {
            "consent_log.jsonl": "JSON boolean",
            "consent_updates.jsonl.gz": "string",
        },
        "revoking_users": owners.user_ids.take(pa.array(revokers)).to_pylist(),
    }
    return manifest, has_records & granted[:, personalization] & ~revokes, revokes


def _write_erasure(
    raw: Path,
    rng,
    owners: _Owners,
    people: _People,
    has_usable_email: np.ndarray,
    revokes: np.ndarray,
    window_end: int,
) -> dict:
    """One request by user_id and, when possible, one by email (ordinary users, not planted
    engaged shoppers or consent revokers, so those truths stay whole)."""
    n = owners.n_users
    candidate = ~owners.is_engaged[:n] & ~revokes
    by_user = rng.choice(np.flatnonzero(candidate), size=1)
    with_email = np.flatnonzero(candidate & has_usable_email & (np.arange(n) != by_user[0]))
    by_email = rng.choice(with_email, size=min(1, len(with_email)), replace=False)
    subjects = np.concatenate([by_user, by_email])
    is_email = np.arange(len(subjects)) >= len(by_user)
    requested_at = window_end - rng.integers(3600, 2 * 86400, len(subjects))
    table = pa.table(
        {
            "user_id": _take(owners.user_ids, subjects, ~is_email),
            "email": _null_where(people.email.take(pa.array(subjects)), ~is_email),
            "requested_at": _timestamp_text(requested_at, "iso_z"),
        }
    )
    _write_table(raw / "erasure/erasure_requests.csv", "csv", table)
    identifiers = pc.coalesce(table["user_id"], table["email"]).to_pylist()
    return {
        "files": [
            {"path": "erasure/erasure_requests.csv", "format": "csv", "rows": table.num_rows}
        ],
        "subjects": [
            {
                "identifier_type": "email" if email else "user_id",
                "identifier": identifier,
                "true_user_id": owners.user_ids[int(subject)].as_py(),
            }
            for subject, email, identifier in zip(subjects, is_email, identifiers, strict=True)
        ],
    }


# ---------------------------------------------------------------------------------------------
# Ground truth and the entry point
# ---------------------------------------------------------------------------------------------


def _mix_text(names: tuple[str, ...], shares: tuple[float, ...]) -> str:
    return "|".join(f"{name}={share:.2f}" for name, share in zip(names, shares, strict=True))


def _write_truth(
    truth: Path,
    owners: _Owners,
    sessions: _Sessions,
    events: _Events,
    catalog: _Catalog,
    delivery: _Delivery,
    profile_truth: pa.Table,
    personalization_consent: np.ndarray,
) -> dict:
    n = owners.n_users
    sessions_per_owner = np.bincount(sessions.owner, minlength=owners.n_owners)[:n]
    events_per_owner = np.bincount(events.owner, minlength=owners.n_owners)[:n]
    preferred = _strings(["|".join(p.preferred_categories) for p in PERSONAS])
    users = {
        "user_id": owners.user_ids,
        "persona": _take(_strings([p.name for p in PERSONAS]), owners.persona[:n]),
        "timezone": _take(_strings([r.timezone for r in REGIONS]), owners.region[:n]),
        "preferred_categories": _take(preferred, owners.persona[:n]),
        "is_engaged_shopper": pa.array(owners.is_engaged[:n]),
        "purchase_rate": pa.array(owners.purchase_rate[:n]),
        "has_personalization_consent": pa.array(personalization_consent),
        "is_anonymous_browser": pa.array(owners.is_anonymous_browser[:n]),
        "n_sessions": pa.array(sessions_per_owner),
        "n_events": pa.array(events_per_owner),
    }
    _write_table(truth / "users.csv", "csv", pa.table(users))
    personas = {
        "persona": _strings([p.name for p in PERSONAS]),
        "preferred_categories": preferred,
        "device": _strings([DEVICES[int(np.argmax(p.device_mix))] for p in PERSONAS]),
        "time_of_day": _strings(
            [TIMES_OF_DAY[int(np.argmax(p.time_of_day_mix))] for p in PERSONAS]
        ),
        "purchase_rate": pa.array([p.purchase_rate for p in PERSONAS]),
        "device_mix": _strings([_mix_text(DEVICES, p.device_mix) for p in PERSONAS]),
        "time_of_day_mix": _strings([_mix_text(TIMES_OF_DAY, p.time_of_day_mix) for p in PERSONAS]),
        "population_share": pa.array([p.population_share for p in PERSONAS]),
    }
    _write_table(truth / "personas.csv", "csv", pa.table(personas))
    _write_table(truth / "profile_records.csv", "csv", profile_truth)

    anonymous = np.flatnonzero(owners.is_anonymous_browser)
    logs_in = np.zeros(owners.n_owners, dtype=bool)
    logs_in[sessions.owner[sessions.has_login]] = True
    anonymous_ids = {
        "anonymous_id": owners.anonymous_ids.take(pa.array(anonymous)),
        "true_user_id": _take(owners.user_ids, np.minimum(anonymous, n - 1), anonymous < n),
        "logs_in": pa.array(logs_in[anonymous]),
    }
    _write_table(truth / "anonymous_ids.csv", "csv", pa.table(anonymous_ids))

    engaged = np.flatnonzero(sessions.is_engaged)
    file_paths = _strings([f.path for f in EVENT_FILES])
    engaged_sessions = {
        "user_id": owners.user_ids.take(pa.array(sessions.owner[engaged])),
        "session_key": sessions.ids(engaged),
        "item_id": catalog.item_ids.take(pa.array(sessions.engaged_item[engaged])),
        "n_views": pa.array(sessions.engaged_views[engaged]),
        "events_file": _take(file_paths, sessions.file[engaged]),
        "session_id_in_data": pa.array(CARRIES_SESSION_ID[sessions.file[engaged]]),
    }
    _write_table(truth / "engaged_sessions.csv", "csv", pa.table(engaged_sessions))

    redelivered_to = np.full(len(events), -1, dtype=np.int8)
    redelivered_to[delivery.redelivered] = delivery.target
    file_dictionary = pa.array([f.path for f in EVENT_FILES])
    type_dictionary = pa.array(list(EVENT_TYPES))

    def render(start: int, stop: int) -> pa.Table:
        rows = np.arange(start, stop)
        owner, item = events.owner[rows], events.item[rows]
        redelivery = redelivered_to[rows]
        return pa.table(
            {
                "event_id": events.ids(rows),
                "event_type": pa.DictionaryArray.from_arrays(
                    events.event_type[rows], type_dictionary
                ),
                "occurred_at": pa.array(events.at[rows].astype("datetime64[s]")),
                "true_user_id": _take(owners.user_ids, np.minimum(owner, n - 1), owner < n),
                "user_id_in_data": pa.array(events.has_user_id[rows]),
                "anonymous_id": _take(owners.anonymous_ids, owner, events.has_anonymous_id[rows]),
                "session_key": sessions.ids(events.session[rows]),
                "item_id": _take(catalog.item_ids, item, item >= 0),
                "file": pa.DictionaryArray.from_arrays(delivery.origin[rows], file_dictionary),
                "redelivered_to": pa.DictionaryArray.from_arrays(
                    pa.array(redelivery, mask=redelivery < 0), file_dictionary
                ),
            }
        )

    _write_rows(truth / "events.parquet", "parquet", len(events), render)
    return {
        "users": int(n),
        "engaged_sessions": int(len(engaged)),
        "anonymous_ids": int(len(anonymous)),
        "never_logged_in_visitors": int(owners.n_owners - n),
    }


def generate(
    out_dir: Path,
    users: int = 300,
    items: int = 120,
    days: int = 21,
    seed: int = 42,
    end_date: str = "2026-10-31",
) -> dict[str, int]:
    """Write raw landing files to ``out_dir/raw/<source>/`` and ground truth to ``out_dir/truth/``.

    Returns the rows written per source (all files of the source, including planted broken rows
    and re-delivered copies). The same arguments always give the same bytes.
    """
    if users < 10 or items < 2 * len(CATEGORIES) or days < 1:
        raise ValueError(f"need users >= 10, items >= {2 * len(CATEGORIES)} and days >= 1")
    out_dir = Path(out_dir)
    raw, truth = out_dir / "raw", out_dir / "truth"
    seeds = np.random.SeedSequence(seed).spawn(len(_RANDOM_STREAMS))
    rng = {name: np.random.default_rng(s) for name, s in zip(_RANDOM_STREAMS, seeds, strict=True)}
    end_day = np.datetime64(end_date, "D")
    window_start = int((end_day - (days - 1)).astype("datetime64[s]").astype(np.int64))
    window_end = int((end_day + 1).astype("datetime64[s]").astype(np.int64))

    pools = _build_pools(rng["pools"], seed)
    catalog = _make_catalog(rng["catalog"], items, pools)
    owners = _make_owners(rng["people"], users, pools)
    sessions, plan = _make_sessions(rng["sessions"], owners, catalog, days, window_start)
    events = _make_events(rng["events"], owners, catalog, sessions, plan)
    del plan
    delivery = _assign_event_files(rng["files"], sessions, events, owners)
    renderer = _EventRenderer(owners, catalog, sessions, events, delivery)
    events_manifest = _write_events(raw, renderer)
    events_manifest |= {
        "distinct_event_ids": len(events),
        "duplicate_deliveries": len(delivery.redelivered),
        "sessions": len(sessions),
        "unmapped_event_type_spellings": list(UNMAPPED_EVENT_TYPE_SPELLINGS),
        "events_with_unmapped_type": int((events.event_type == HOVER).sum()),
        "first_event_utc": str(np.datetime64(int(events.at.min()), "s")),
        "last_event_utc": str(np.datetime64(int(events.at.max()), "s")),
    }
    catalog_manifest = _write_catalog(raw, rng["catalog"], catalog)
    context_manifest = _write_context(
        raw, rng["context"], owners, sessions, events, delivery, pools
    )
    people = _make_people(rng["profiles"], owners, pools, end_day, window_start)
    profiles = _write_profiles(raw, rng["profiles"], owners, people)
    consent_manifest, personalization_consent, revokes = _write_consent(
        raw, rng["consent"], owners, people, profiles.has_usable_email, window_start, window_end
    )
    erasure_manifest = _write_erasure(
        raw, rng["erasure"], owners, people, profiles.has_usable_email, revokes, window_end
    )
    truth_summary = _write_truth(
        truth, owners, sessions, events, catalog, delivery, profiles.truth, personalization_consent
    )
    sources = {
        "events": events_manifest,
        "context": context_manifest,
        "profiles": profiles.manifest,
        "catalog": catalog_manifest,
        "consent": consent_manifest,
        "erasure": erasure_manifest,
    }
    manifest = {
        "parameters": {
            "users": users,
            "items": items,
            "days": days,
            "seed": seed,
            "end_date": end_date,
        },
        # Sessions start on these calendar days in each user's own time zone; the true UTC range
        # is in sources.events.first_event_utc / last_event_utc.
        "local_days": {"first": str(end_day - (days - 1)), "last": str(end_day)},
        "sources": sources,
        "erasure_subjects": erasure_manifest["subjects"],
        "consent_revoking_users": consent_manifest["revoking_users"],
        "truth": truth_summary,
    }
    (truth / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {name: sum(f["rows"] for f in source["files"]) for name, source in sources.items()}
