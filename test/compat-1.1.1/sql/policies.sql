-- may_invite() and domain_allowed(): the rules, readable and callable as SQL,
-- and the row-level security policies on invites
\i sql/include/fixture.psql

SELECT u, m, invitetomedia.may_invite(u, m)
  FROM unnest(ARRAY['owner', 'coowner', 'coeditor', 'copublisher', 'coviewer', 'stranger', 'viewer', 'admin', 'nobody']) AS u,
       unnest(ARRAY['live', 'vid', 'nope']) AS m
 WHERE m = 'live' OR u IN ('owner', 'viewer')
 ORDER BY m, u;
SELECT invitetomedia.may_invite('viewer', 'vvid') AS viewer_owns_but_role_too_low;
SELECT invitetomedia.may_invite(NULL, 'live') AS null_actor;

UPDATE invitetomedia.settings SET restrict_new_user_domains = '{university.edu, Corp.Example}';
SELECT e, invitetomedia.domain_allowed(e)
  FROM unnest(ARRAY['a@university.edu', 'a@cs.university.edu', 'a@UNIVERSITY.EDU', 'a@notuniversity.edu',
                    'a@university.edu.evil.com', 'a@corp.example', 'a@mail.corp.example',
                    'existing.person@university.edu', ' Existing.Person@University.EDU ',
                    'a@outside.example', 'no-at-sign']) AS e;

-- roles that read the invites table directly see the links they could have made
CREATE ROLE coeditor;
CREATE ROLE stranger;
GRANT USAGE ON SCHEMA invitetomedia TO coeditor, stranger;
GRANT SELECT (invite_id, media_id, email, invited_by) ON invitetomedia.invites TO coeditor, stranger;
GRANT EXECUTE ON FUNCTION invitetomedia.may_invite(text, text) TO coeditor, stranger;
UPDATE invitetomedia.settings SET enabled = true, restrict_new_user_domains = '{}';
SELECT count(*) FROM invitetomedia.invite_create('live', 'owner', 'a@outside.example', 'A', 'A');
SELECT count(*) FROM invitetomedia.invite_create('vid', 'owner', 'b@outside.example', 'B', 'B');
SET ROLE coeditor;
SELECT media_id, email, invited_by FROM invitetomedia.invites ORDER BY invite_id;
SELECT pg_temp.try('SELECT token_hash FROM invitetomedia.invites');
SET ROLE stranger;
SELECT media_id, email, invited_by FROM invitetomedia.invites ORDER BY invite_id;
RESET ROLE;
REVOKE ALL ON invitetomedia.invites FROM coeditor, stranger;
REVOKE ALL ON FUNCTION invitetomedia.may_invite(text, text) FROM coeditor, stranger;
REVOKE ALL ON SCHEMA invitetomedia FROM coeditor, stranger;
DROP ROLE coeditor;
DROP ROLE stranger;

-- the policies as a DBA reads them
SELECT polname, polcmd, pg_get_expr(polqual, polrelid) AS using_expr,
       pg_get_expr(polwithcheck, polrelid) AS check_expr
  FROM pg_policy WHERE polrelid = 'invitetomedia.invites'::regclass ORDER BY polname;
