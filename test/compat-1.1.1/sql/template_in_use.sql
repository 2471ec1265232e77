-- A template that settings.invite_email_template names cannot be deleted
-- (a RESTRICT foreign key; renaming it follows: settings.sql).  The
-- refusal is PostgreSQL's own: 23503 up to 17, 23001 ("violates RESTRICT
-- setting of foreign key constraint") since 18.  Two expected files:
-- template_in_use.out (up to 17), template_in_use_1.out (18 and later).
\i sql/include/fixture.psql
INSERT INTO invitetomedia.email_templates VALUES ('invite', 'Hi', 'Open {URL}');
UPDATE invitetomedia.settings SET invite_email_template = 'invite';
SELECT pg_temp.try($$DELETE FROM invitetomedia.email_templates WHERE name = 'invite'$$);
-- still there, still in use
SELECT s.invite_email_template, t.subject
  FROM invitetomedia.settings s JOIN invitetomedia.email_templates t ON t.name = s.invite_email_template;
-- once no longer in use, it can go
UPDATE invitetomedia.settings SET invite_email_template = NULL;
SELECT pg_temp.try($$DELETE FROM invitetomedia.email_templates WHERE name = 'invite'$$);
