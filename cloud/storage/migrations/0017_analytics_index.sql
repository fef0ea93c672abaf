-- Analytics (cloud/analytics) count one site's tickets created in a range of local days.
-- tickets_created (created_at) finds the range but reads every site's tickets in it, and
-- tickets_site_status has the status between site and time; with this index a site's range is
-- read alone (an index scan over that site's rows only, however many sites there are).
CREATE INDEX tickets_site_created ON tickets (site_id, created_at);
