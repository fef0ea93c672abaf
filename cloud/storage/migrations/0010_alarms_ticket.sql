-- A ticket's alarms are read with every ticket detail; without this each read scans all alarms.
CREATE INDEX alarms_ticket ON alarms (ticket_id) WHERE ticket_id IS NOT NULL;
