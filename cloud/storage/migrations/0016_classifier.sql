-- The complaint classifier (cloud/classify, docs/classification.md): trained models with their
-- held-out figures, exactly one of them active; the prediction made for each ticket filed
-- without a category; and the staff's labels for such tickets, which retraining learns from.

CREATE TABLE classifier_models (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the fitted scikit-learn pipeline, pickled; only the cloud service writes it
    model               bytea NOT NULL,
    -- sha256 of `model`: processes keep a loaded model by it
    digest              text NOT NULL,
    params              jsonb NOT NULL,
    -- held-out figures beside the majority baseline (cloud.classify.model.Figures)
    figures             jsonb NOT NULL,
    corpus_hash         text NOT NULL,
    corpus_training     integer NOT NULL,
    corpus_held_out     integer NOT NULL,
    overrides_used      integer NOT NULL DEFAULT 0,
    active              boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL,
    -- a username, or 'system' for the model the first classification trained from the corpus
    created_by          text NOT NULL,
    created_by_user_id  bigint REFERENCES users (id),
    activated_at        timestamptz,
    -- what retraining decided and why
    note                text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX classifier_models_one_active ON classifier_models (active) WHERE active;

CREATE TABLE classifier_predictions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id       bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    model_id        bigint NOT NULL REFERENCES classifier_models (id),
    -- the text classified (title and description as filed)
    text            text NOT NULL,
    category        text NOT NULL,
    subcategory     text NOT NULL,
    confidence      double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    threshold       double precision NOT NULL,
    -- true: the ticket took the labels; false: it went to the service desk (or had a category already)
    applied         boolean NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE INDEX classifier_predictions_ticket ON classifier_predictions (ticket_id, created_at DESC);

CREATE TABLE classifier_overrides (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id               bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    prediction_id           bigint REFERENCES classifier_predictions (id) ON DELETE SET NULL,
    -- the text as it was classified: the ticket's own text may change later
    text                    text NOT NULL,
    predicted_category      text NOT NULL,
    predicted_subcategory   text NOT NULL,
    -- the staff's labels (subcategory may be missing: such a row teaches the model nothing)
    category                text NOT NULL,
    subcategory             text,
    agrees                  boolean NOT NULL,
    user_id                 bigint REFERENCES users (id),
    actor                   text NOT NULL,
    created_at              timestamptz NOT NULL
);
CREATE INDEX classifier_overrides_created ON classifier_overrides (created_at);
