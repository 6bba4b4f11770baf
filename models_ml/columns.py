"""The one column vocabulary shared by SQL and Python.

Every name here means the same thing in the raw tables, the dbt models and the ML outputs.
Functions in `models_ml` take column names as keyword arguments defaulting to these constants,
so a caller with other names can pass them in instead of renaming.
"""

# Keys and identifiers
PERSON_ID = "person_id"
USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"
RECORD_ID = "record_id"
ITEM_ID = "item_id"
EVENT_ID = "event_id"
SESSION_ID = "session_id"
SOURCE_SYSTEM = "source_system"

# Events and interactions
EVENT_TYPE = "event_type"
OCCURRED_AT = "occurred_at"
WEIGHT = "weight"
VALUE = "value"
QUANTITY = "quantity"

# Identity graph (intermediate.int_identity_nodes / int_identity_edges, ml.identity_assignments)
NODE_KEY = "node_key"
NODE_KEY_A = "node_key_a"
NODE_KEY_B = "node_key_b"
IDENTIFIER_TYPE = "identifier_type"
IDENTIFIER = "identifier"
METHOD = "method"
MATCH_PROBABILITY = "match_probability"

# Catalog and affinity
CATEGORY = "category"
AFFINITY = "affinity"
INTERACTIONS = "interactions"
IS_IN_STOCK = "is_in_stock"
IS_CURATED = "is_curated"
PRICE = "price"

# Consent
HAS_PERSONALIZATION_CONSENT = "has_personalization_consent"
# The person's data may count in anonymous aggregates (popularity, model training, evaluation).
HAS_ANALYTICS_CONSENT = "has_analytics_consent"

# Segments (ml.user_segments, ml.segment_quality)
SEGMENT_TYPE = "segment_type"
SEGMENT_ID = "segment_id"
SEGMENT_NAME = "segment_name"
SCORE = "score"
RUN_AT = "run_at"
K = "k"
SILHOUETTE = "silhouette"
DAVIES_BOULDIN = "davies_bouldin"
N_PEOPLE = "n_people"
IS_CHOSEN = "is_chosen"

# Recommendations (ml.recommendations)
RANK = "rank"
ALGORITHM = "algorithm"
REASON = "reason"

# Identifier types that get a `person_id` in the identity map (others, such as `email_token`,
# only link nodes together).
ASSIGNED_IDENTIFIER_TYPES = (RECORD_ID, USER_ID, ANONYMOUS_ID)

# Column order of the tables the ML assets write (schema `ml`, see docs/warehouse_layout.md).
IDENTITY_ASSIGNMENT_COLUMNS = (
    IDENTIFIER_TYPE,
    IDENTIFIER,
    SOURCE_SYSTEM,
    PERSON_ID,
    METHOD,
    MATCH_PROBABILITY,
)
USER_SEGMENT_COLUMNS = (PERSON_ID, SEGMENT_TYPE, SEGMENT_ID, SEGMENT_NAME, SCORE)
SEGMENT_QUALITY_COLUMNS = (RUN_AT, ALGORITHM, K, SILHOUETTE, DAVIES_BOULDIN, N_PEOPLE, IS_CHOSEN)
RECOMMENDATION_COLUMNS = (PERSON_ID, RANK, ITEM_ID, SCORE, ALGORITHM, REASON)
