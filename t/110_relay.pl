# The event relay (itm_relay.c, issue 21): with the library preloaded and
# a database named in invitetomedia.relay_databases, a background worker
# announces invitetomedia_accepted and invitetomedia_email after the
# writing transaction commits, one notification per record, and the
# writers there send none; every other database keeps 1.1's NOTIFY in the
# writing transaction.
#
# The databases are at the default version (2.0 on this branch), or at
# ITM_RELAY_VERSION if set (ITM_RELAY_VERSION=1.1.1 runs the same checks
# on 1.1.1's relay, which counts with the record ids).  On 2.0 the ids are
# drawn at random, the payloads carry the tenant
# ({"kind":"invite","tenant":T,"id":N}, {"tenant":T,"id":N} on
# invitetomedia_email) and the relay follows event_seq, which the writers
# draw from one sequence per table (docs/design-2.0.md, section 7): the
# checks compare what arrives with the rows and the ids the calls return,
# never with constants, and section 1 compares the two databases' payloads
# with each id replaced by what it names.
#
# One cluster, fsync on (the crash checks), three databases:
#   listed    relayed; the delivery, timing, crash and shape checks
#   unlisted  not relayed; the same calls as listed, to compare (1.1)
#   load      relayed; pgbench, the relay's first start under load, and
#             a drop and re-creation of the extension
#
# The checks, in order:
#   1   the same calls in listed and unlisted give the same notifications,
#       each expected one exactly once; in listed all from the relay
#   2   nothing before COMMIT; a rolled back use never
#   3   two uses (and two joins) with identical payloads, made while the
#       relay is paused: two notifications each
#   4   a transaction holding an xid delays the announcements, loses none
#   5   crash (immediate stop): the events committed unannounced are
#       announced once after it; one announced before it is not again
#   6   pgbench, 8 clients: the notifications are exactly the records';
#       6b a backlog larger than the relay's read of a round
#   7   the relay's first start while pgbench runs: nothing lost or doubled
#   8   a sequence at CACHE 10: the relay stops and says so, the events
#       wait and come after the repair; 8b a changed default, a CYCLE
#   9   DROP and CREATE EXTENSION in a relayed database: the new events
#       are announced
#
# Two checks failed with the relay of 5ede547, and found these bugs (fixed
# in the commit after it):
#   5   the relay's transactions write no WAL but their commit record, so
#       PostgreSQL committed them asynchronously even at synchronous_commit
#       = on; a listener got a batch before the commit record (and with
#       it the origin's progress) was on disk, and after a crash in that
#       window (up to wal_writer_delay) the relay announced it again.
#   9   a database's "ready" mark in shared memory outlived the origins it
#       stood for: after the extension was re-created (new sequences, no
#       origins) the writers still found the relay ready and sent nothing,
#       and the relay's next first start began after their records.
#
# A listener is a background psql that LISTENs on both channels and is fed
# SELECT 1 every 50 ms: psql prints "Asynchronous notification ... with
# payload ... received from server process with PID n." after a command,
# so each notification is seen with the process that sent it.  Every wait
# polls with a timeout; a check that nothing arrives watches for a fixed
# time (a second or more: a hundred relay rounds at naptime 10 ms) and is
# followed by a check that the expected notifications do arrive, so that a
# dead listener or relay cannot pass it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $wait_timeout = 30;    # seconds, for anything that must arrive
my $clients = 8;          # pgbench
my $rate = 4000;          # pgbench's transactions per second, at most

my $node = PostgreSQL::Test::Cluster->new('relay');
$node->init;
$node->append_conf('postgresql.conf', qq{
fsync = on
synchronous_commit = on
max_connections = 40
log_statement = ddl
});
$node->start;

# identical in every database: the settings, a template, a user, a video
# for invites and a webcast for guest links
my $version = $ENV{ITM_RELAY_VERSION};
my $setup = (defined $version ? "CREATE EXTENSION invitetomedia VERSION '$version' CASCADE;"
		: 'CREATE EXTENSION invitetomedia CASCADE;') . q{
INSERT INTO invitetomedia.email_templates VALUES
  ('t', 'Invitation to {MEDIA_TITLE}', 'Hello {FIRST_NAME}, {URL}');
UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't';
INSERT INTO invitetomedia.users VALUES ('owner', 'owner@site.example', 'O', 'Owner', 'admin');
INSERT INTO invitetomedia.media VALUES
  ('m1', 'video', 'Film', 'owner'),
  ('w1', 'webcast', 'Cast', 'owner');
};
for my $db (qw(listed unlisted load))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, $setup);
}
my $extversion = $node->safe_psql('listed',
	q{SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia'});
my $v2 = $extversion !~ /^1\./;
note "extension $extversion: " . ($v2 ? 'random ids, the tenant in payloads, event_seq' : 'ids counted');
# the tenant every call acts for (the superuser is unmapped: the default
# tenant), the same in the three databases
my $tenant = $v2
  ? $node->safe_psql('listed', 'SELECT invitetomedia.tenant()')
  : undef;
if ($v2)
{
	is(join(',', map { $node->safe_psql($_, 'SELECT invitetomedia.tenant()') } qw(listed unlisted load)),
		"$tenant,$tenant,$tenant", 'the calls act for the same tenant in the three databases');
}
# the sequences the relay follows, per table
my %relay_seq = $v2
  ? (redemptions => 'redemptions_event_seq', guest_link_joins => 'guest_link_joins_event_seq',
	outbox => 'outbox_event_seq')
  : (redemptions => 'redemptions_redemption_id_seq', guest_link_joins => 'guest_link_joins_join_id_seq',
	outbox => 'outbox_message_id_seq');

# the links pgbench consumes, made before the relay runs (no email)
my $load_links = 40000;
$node->safe_psql('load', qq{
CREATE TABLE public.tok (id bigserial PRIMARY KEY, token text NOT NULL, email text NOT NULL);
CREATE SEQUENCE public.pick;
CREATE SEQUENCE public.newmail;
INSERT INTO public.tok (token, email)
SELECT c.token, e.email
  FROM generate_series(1, $load_links) g,
       LATERAL (SELECT 'u' || g || '\@load.example' AS email) e,
       LATERAL invitetomedia.invite_create('m1', 'owner', e.email, 'F', 'L', 'viewer', false) c;
CREATE TABLE public.guest (token text NOT NULL);
INSERT INTO public.guest SELECT token FROM invitetomedia.guest_link_create('w1', 'owner', 'Everyone');
});

$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'invitetomedia'
invitetomedia.relay_databases = 'listed,load'
});
$node->restart;

########################################################################
# helpers
########################################################################

sub poll_until
{
	my ($cond, $timeout) = @_;
	my $end = time + ($timeout // $wait_timeout);
	while (1)
	{
		return 1 if $cond->();
		return 0 if time > $end;
		usleep(100_000);
	}
}

# waits for a line of the server log written after $offset
sub wait_log
{
	my ($re, $offset, $timeout) = @_;
	return poll_until(sub { slurp_file($node->logfile, $offset) =~ $re }, $timeout);
}

sub count_log
{
	my ($re, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my $n = () = $log =~ /$re/g;
	return $n;
}

sub relay_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT pid FROM pg_stat_activity
		 WHERE backend_type = 'invitetomedia relay' AND datname = '$db'});
}

# ALTER SYSTEM, so that a pause outlives a restart.  After a pause the
# relay has 300 ms (thirty of its naps) to read the configuration; the
# checks that follow a pause look that nothing arrives, so a pause that
# did not take effect in time fails them rather than passing unseen.
sub set_paused
{
	my ($on) = @_;
	$node->safe_psql('postgres',
		$on
		? 'ALTER SYSTEM SET invitetomedia.relay_paused = on'
		: 'ALTER SYSTEM RESET invitetomedia.relay_paused');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	usleep(300_000) if $on;
}

sub session
{
	my ($db) = @_;
	my $s = $node->background_psql($db);
	$s->set_query_timer_restart;
	return $s;
}

# a session the server may have cut (crash): no \q, just end psql
sub kill_session
{
	my ($s) = @_;
	eval { $s->{run}->kill_kill; };
}

sub listener
{
	my ($db) = @_;
	my $l = { s => session($db), got => [], db => $db };
	$l->{s}->query_safe('LISTEN invitetomedia_accepted; LISTEN invitetomedia_email');
	return $l;
}

# runs SELECT 1 and keeps the notifications psql prints
sub drain
{
	my ($l) = @_;
	my $out = $l->{s}->query_safe('SELECT 1');
	while ($out =~
		/^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID (\d+)\.\r?$/mg)
	{
		push @{ $l->{got} }, { key => "$1 $2", pid => $3 };
	}
	return;
}

sub collect_for
{
	my ($l, $seconds) = @_;
	my $end = time + $seconds;
	while (1)
	{
		drain($l);
		last if time > $end;
		usleep(50_000);
	}
	return;
}

# the notifications collected so far, forgotten by the listener
sub take
{
	my ($l) = @_;
	my @got = @{ $l->{got} };
	$l->{got} = [];
	return @got;
}

sub counts
{
	my %m;
	$m{$_}++ for @_;
	return \%m;
}

# '' if the lists hold the same items as often, else what differs
sub compare
{
	my ($got, $want) = @_;
	my ($g, $w) = (counts(@$got), counts(@$want));
	my (@missing, @twice, @extra);
	for my $k (sort keys %$w)
	{
		my $n = $g->{$k} // 0;
		push @missing, $k if $n < $w->{$k};
		push @twice, "$k x$n" if $n > $w->{$k};
	}
	for my $k (sort keys %$g)
	{
		push @extra, "$k x$g->{$k}" unless exists $w->{$k};
	}
	my @say;
	for (['missing', \@missing], ['too often', \@twice], ['unexpected', \@extra])
	{
		my ($what, $list) = @$_;
		next unless @$list;
		my @show = @$list > 8 ? (@$list[0 .. 7], '...') : @$list;
		push @say, scalar(@$list) . " $what: " . join('; ', @show);
	}
	return join(' | ', @say);
}

sub covers
{
	my ($got, $want) = @_;
	my $g = counts(@$got);
	my $w = counts(@$want);
	for my $k (keys %$w)
	{
		return 0 if ($g->{$k} // 0) < $w->{$k};
	}
	return 1;
}

# Collects until every expected notification is there (or the timeout),
# then $settle seconds more so that a repeated one shows; checks that what
# arrived is exactly what was expected.  Returns what arrived.
sub expect_exactly
{
	my ($l, $want, $name, %opt) = @_;
	my $settle = $opt{settle} // 0.5;
	my $timeout = $opt{timeout} // $wait_timeout;
	my $end = time + $timeout;
	while (1)
	{
		drain($l);
		last if covers([ map { $_->{key} } @{ $l->{got} } ], $want);
		last if time > $end;
		usleep(50_000);
	}
	collect_for($l, $settle);
	my @got = take($l);
	is(compare([ map { $_->{key} } @got ], $want), '', $name);
	return @got;
}

sub expect_nothing
{
	my ($l, $seconds, $name) = @_;
	collect_for($l, $seconds);
	my @got = take($l);
	is(join('; ', map { $_->{key} } @got), '', $name);
	return;
}

# the payloads: 1.1's, or 2.0's with the tenant
sub accepted_invite
{
	return $v2
	  ? qq{invitetomedia_accepted {"kind":"invite","tenant":$tenant,"id":$_[0]}}
	  : qq{invitetomedia_accepted {"kind":"invite","id":$_[0]}};
}

sub accepted_guest
{
	return $v2
	  ? qq{invitetomedia_accepted {"kind":"guest_link","tenant":$tenant,"id":$_[0]}}
	  : qq{invitetomedia_accepted {"kind":"guest_link","id":$_[0]}};
}
sub email { return $v2 ? qq{invitetomedia_email {"tenant":$tenant,"id":$_[0]}} : "invitetomedia_email $_[0]"; }

# Where a window of events starts: the records a database holds now, kept
# in a table of its own (public.itm_mark_N) by their ids.  2.0's ids are
# random, so "after the highest id" means nothing; the records not in the
# mark are the window's, whatever their event_seq (which the relay
# follows, and which these checks therefore do not trust).  One tenant
# acts in this test, so an id names a record.
my $mark_no = 0;
sub marks
{
	my ($db) = @_;
	my $table = 'public.itm_mark_' . ++$mark_no;
	$node->safe_psql($db, qq{
		CREATE TABLE $table AS
		SELECT 'r'::text AS t, redemption_id AS id FROM invitetomedia.redemptions
		UNION ALL SELECT 'j', join_id FROM invitetomedia.guest_link_joins
		UNION ALL SELECT 'o', message_id FROM invitetomedia.outbox;
		CREATE INDEX ON $table (t, id);});
	return $table;
}

# what is announced for the records not in the mark (undef: every record):
# each ok use, each ok join, each message, built from the rows
sub events_since
{
	my ($db, $m) = @_;
	my $not_in = sub {
		my ($t, $col) = @_;
		return defined $m ? "AND NOT EXISTS (SELECT 1 FROM $m k WHERE k.t = '$t' AND k.id = x.$col)" : '';
	};
	my $sql = $v2 ? qq{
		SELECT 'invitetomedia_accepted {"kind":"invite","tenant":' || tenant_id || ',"id":' || invite_id || '}'
		  FROM invitetomedia.redemptions x WHERE status = 'ok' @{[ $not_in->('r', 'redemption_id') ]}
		UNION ALL
		SELECT 'invitetomedia_accepted {"kind":"guest_link","tenant":' || tenant_id || ',"id":' || guest_link_id || '}'
		  FROM invitetomedia.guest_link_joins x WHERE status = 'ok' @{[ $not_in->('j', 'join_id') ]}
		UNION ALL
		SELECT 'invitetomedia_email {"tenant":' || tenant_id || ',"id":' || message_id || '}'
		  FROM invitetomedia.outbox x WHERE true @{[ $not_in->('o', 'message_id') ]}} : qq{
		SELECT 'invitetomedia_accepted {"kind":"invite","id":' || invite_id || '}'
		  FROM invitetomedia.redemptions x WHERE status = 'ok' @{[ $not_in->('r', 'redemption_id') ]}
		UNION ALL
		SELECT 'invitetomedia_accepted {"kind":"guest_link","id":' || guest_link_id || '}'
		  FROM invitetomedia.guest_link_joins x WHERE status = 'ok' @{[ $not_in->('j', 'join_id') ]}
		UNION ALL
		SELECT 'invitetomedia_email ' || message_id
		  FROM invitetomedia.outbox x WHERE true @{[ $not_in->('o', 'message_id') ]}};
	my $out = $node->safe_psql($db, $sql);
	return [ grep { $_ ne '' } split /\n/, $out ];
}

# an invite link: (invite_id, token); $uses sets link_reusability first
sub new_invite
{
	my ($db, $email, $uses, $send) = @_;
	$send //= 'true';
	$node->safe_psql($db, "UPDATE invitetomedia.settings SET link_reusability = $uses")
	  if defined $uses;
	return split /\|/, $node->safe_psql($db, qq{
		SELECT invite_id, token FROM invitetomedia.invite_create(
		  'm1', 'owner', '$email', 'F', 'L', 'viewer', $send)});
}

sub consume_sql
{
	my ($token, $email, $device) = @_;
	my $d = defined $device ? ", '$device'" : '';
	return "SELECT status FROM invitetomedia.invite_consume('$token', '$email'$d)";
}

sub consume
{
	my ($db, @args) = @_;
	return $node->safe_psql($db, consume_sql(@args));
}

########################################################################
# the relay runs
########################################################################

ok(wait_log(qr/invitetomedia relay: announcing the events of database "listed" from now on/),
	'log: the relay announces the events of database listed');
ok(wait_log(qr/invitetomedia relay: announcing the events of database "load" from now on/),
	'log: the relay announces the events of database load');
is($node->safe_psql('postgres', q{
	SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_stat_activity
	 WHERE backend_type = 'invitetomedia relay'}),
	'listed,load', "pg_stat_activity: a backend 'invitetomedia relay' in each listed database, none elsewhere");
is($node->safe_psql('listed', q{
	SELECT count(*) FROM pg_replication_origin
	 WHERE roname LIKE 'invitetomedia\_' || (SELECT oid FROM pg_database WHERE datname = 'listed') || '\_%'}),
	'3', 'the relay of listed keeps its cursor in three replication origins');

my $relay_listed = relay_pid('listed');

########################################################################
# 1. delivery, and the same notifications as 1.1's
########################################################################

# The same calls in both databases: creates with email, a resend, uses
# (one refused for exhaustion, one for a wrong email, a device's rejoin),
# guest joins (a rejoin, a refusal).  Returns the statuses, the
# notifications these calls must give (built from the ids they returned
# and the outbox rows they made) and a name for each id ("invite a",
# "message of b", ...; 1.1 counts its ids from 1 in each database, 2.0
# draws them: the names let section 1 compare the two databases).
sub same_calls
{
	my ($db) = @_;
	my @st;
	my ($ia, $ta) = new_invite($db, 'a@x.example', 1);
	my ($ib, $tb) = new_invite($db, 'b@x.example');
	my ($ic, $tc) = new_invite($db, 'c@x.example', 2);
	my %name = ("invite $ia" => 'invite a', "invite $ib" => 'invite b', "invite $ic" => 'invite c');
	my %letter = ($ia => 'a', $ib => 'b', $ic => 'c');
	my %message;    # invite id -> its message's id, before the resend
	for my $row (split /\n/, $node->safe_psql($db,
			"SELECT invite_id || ' ' || message_id FROM invitetomedia.outbox WHERE invite_id IN ($ia, $ib, $ic)"))
	{
		my ($i, $mid) = split / /, $row;
		$message{$i} = $mid;
		$name{"message $mid"} = "message of $letter{$i}";
	}
	push @st, consume($db, $ta, 'a@x.example');               # ok
	push @st, consume($db, $ta, 'a@x.example');               # exhausted
	push @st, consume($db, $tb, 'wrong@x.example');           # email_mismatch
	push @st, consume($db, $tc, 'c@x.example', 'phone');      # ok
	push @st, consume($db, $tc, 'c@x.example', 'phone');      # rejoin
	push @st, consume($db, $tc, 'c@x.example');               # ok
	$node->safe_psql($db, "SELECT 1 FROM invitetomedia.invite_resend($ib, 'owner')");
	my $resent = $node->safe_psql($db,
		"SELECT string_agg(message_id::text, ',') FROM invitetomedia.outbox
		  WHERE invite_id = $ib AND message_id <> " . ($message{$ib} // 0));
	$name{"message $resent"} = 'message of the resend of b';
	my ($g, $tg) = split /\|/, $node->safe_psql($db,
		"SELECT guest_link_id, token FROM invitetomedia.guest_link_create('w1', 'owner', 'Audience', 2)");
	$name{"guest_link $g"} = 'guest link';
	for my $j ("'g1\@x.example', 'G', 'One', 'kiosk'",    # ok
		"'g1\@x.example', 'G', 'One', 'kiosk'",           # rejoin
		"'g2\@x.example', 'G', 'Two'",                    # ok
		"'g3\@x.example', 'G', 'Three'")                  # exhausted
	{
		push @st, $node->safe_psql($db,
			"SELECT status FROM invitetomedia.guest_link_join('$tg', $j)");
	}
	# What 1.1 sends for these calls: the four messages (the resend's
	# drops the unsent message of b from the outbox, but its announcement
	# was made: the relay reads a record within a round or two, long
	# before the resend), the two ok uses of invite c and the one of
	# invite a, the two ok joins of the guest link.  Nothing for the
	# refusals and the rejoins.
	my @want = (
		(map { email($_) } grep { defined } @message{ $ia, $ib, $ic }), email($resent),
		accepted_invite($ia), accepted_invite($ic), accepted_invite($ic),
		accepted_guest($g), accepted_guest($g));
	return (join(',', @st), \@want, \%name);
}

# a notification with its id replaced by the name same_calls gave it (the
# id is the payload's last number in 1.1's and 2.0's forms)
sub named
{
	my ($key, $name) = @_;
	my $kind = $key =~ /^invitetomedia_email / ? 'message'
	  : $key =~ /"kind":"(invite|guest_link)"/ ? $1 : 'unknown';
	$key =~ s{(\d+)(\}?)$}{'<' . ($name->{"$kind $1"} // "unknown $kind $1") . ">$2"}e;
	return $key;
}

my %got1;
for my $db (qw(listed unlisted))
{
	my $l = listener($db);
	my ($statuses, $want1, $name) = same_calls($db);
	is($statuses, 'ok,exhausted,email_mismatch,ok,rejoin,ok,ok,rejoin,ok,exhausted',
		"1 $db: the calls answer as expected");
	is(scalar(@$want1), 9, "1 $db: four messages (three, then the resend's), three uses and two joins to announce");
	my @got = expect_exactly($l, $want1,
		"1 $db: each ok use, ok join and message announced exactly once");
	$got1{$db} = [ sort map { named($_->{key}, $name) } @got ];
	if ($db eq 'listed')
	{
		is(join(',', sort { $a <=> $b } keys %{ counts(map { $_->{pid} } @got) }), $relay_listed,
			'1 listed: every notification came from the relay (the writers sent none)');
	}
	else
	{
		ok(@got && !grep({ $_->{pid} == $relay_listed } @got),
			'1 unlisted: the notifications came from the writers');
	}
	$l->{s}->quit;
}
is_deeply($got1{listed}, $got1{unlisted},
	'1: listed and unlisted databases received the same (channel, payload) notifications, ids named by what they are')
  or diag(explain($got1{listed}, $got1{unlisted}));

my $l = listener('listed');
my $w = session('listed');

########################################################################
# 2. never before commit; a rolled back use never
########################################################################

{
	my ($i1, $t1) = new_invite('listed', 'n1@x.example', 1, 'false');
	my ($i2, $t2) = new_invite('listed', 'n2@x.example', undef, 'false');
	my ($i3, $t3) = new_invite('listed', 'n3@x.example', undef, 'false');
	$w->query_safe('BEGIN');
	is($w->query_safe(consume_sql($t1, 'n1@x.example')), 'ok', '2: a use in an open transaction');
	expect_nothing($l, 1.5, '2: nothing announced while the using transaction is open');
	$w->query_safe('COMMIT');
	expect_exactly($l, [ accepted_invite($i1) ], '2: the use announced once after COMMIT');

	$w->query_safe('BEGIN');
	is($w->query_safe(consume_sql($t2, 'n2@x.example')), 'ok', '2: a use that will roll back');
	$w->query_safe('ROLLBACK');
	is($w->query_safe(consume_sql($t3, 'n3@x.example')), 'ok', '2: a use after it, committed');
	expect_exactly($l, [ accepted_invite($i3) ],
		'2: the committed use announced, the rolled back one never', settle => 1.5);
}

########################################################################
# 3. one notification per use, though the payloads are identical
########################################################################

{
	my ($i, $t) = new_invite('listed', 'two@x.example', 2, 'false');
	my ($g, $tg) = split /\|/, $node->safe_psql('listed',
		"SELECT guest_link_id, token FROM invitetomedia.guest_link_create('w1', 'owner', 'Pair', 5)");
	set_paused(1);
	is($w->query_safe(consume_sql($t, 'two@x.example')), 'ok', '3: first use while paused');
	is($w->query_safe(consume_sql($t, 'two@x.example')), 'ok', '3: second use while paused');
	for my $n (1, 2)
	{
		is($w->query_safe("SELECT status FROM invitetomedia.guest_link_join('$tg', 'p$n\@x.example', 'P', 'P')"),
			'ok', "3: guest join $n while paused");
	}
	expect_nothing($l, 1, '3: nothing announced while paused');
	set_paused(0);
	expect_exactly($l,
		[ accepted_invite($i), accepted_invite($i), accepted_guest($g), accepted_guest($g) ],
		'3: after the pause, two notifications for the two uses and two for the two joins',
		settle => 1);
}

########################################################################
# 4. a transaction holding an xid delays announcements; none is lost
########################################################################

{
	my $h = session('listed');
	$h->query_safe('BEGIN');
	$h->query_safe('SELECT txid_current()');
	my $m = marks('listed');
	my ($i1, $t1) = new_invite('listed', 'x1@x.example', 1);    # with its email
	my ($i2, $t2) = new_invite('listed', 'x2@x.example');
	is(consume('listed', $t1, 'x1@x.example'), 'ok', '4: a use while an xid is held');
	is(consume('listed', $t2, 'x2@x.example', 'tab'), 'ok', '4: another use while an xid is held');
	my $want = events_since('listed', $m);
	is(scalar(@$want), 4, '4: two messages and two uses to announce');
	expect_nothing($l, 1.5, '4: nothing announced while the xid is held');
	$h->query_safe('COMMIT');
	expect_exactly($l, $want, '4: every one announced once after the xid ended');
	$h->quit;
}

########################################################################
# 5. crash: a committed event is announced after a crash exactly once,
#    an event announced before the crash is not announced again
########################################################################

{
	my $log_offset = -s $node->logfile;
	# (b) announced before the crash
	my ($i0, $t0) = new_invite('listed', 'c0@x.example', 1, 'false');
	is(consume('listed', $t0, 'c0@x.example'), 'ok', '5: a use announced before the crash');
	expect_exactly($l, [ accepted_invite($i0) ], '5: it was announced before the crash', settle => 0);

	# (a) committed, not announced: while an xid is held, then while paused
	my $h = session('listed');
	$h->query_safe('BEGIN');
	$h->query_safe('SELECT txid_current()');
	my $m = marks('listed');
	my ($i1, $t1) = new_invite('listed', 'c1@x.example', 1);
	is(consume('listed', $t1, 'c1@x.example'), 'ok', '5: a use while an xid is held');
	expect_nothing($l, 0.5, '5: not announced while the xid is held');
	set_paused(1);    # written to postgresql.auto.conf: still paused after the restart
	my ($i2, $t2) = new_invite('listed', 'c2@x.example');
	is(consume('listed', $t2, 'c2@x.example'), 'ok', '5: a use while paused');
	my $want = events_since('listed', $m);
	is(scalar(@$want), 4, '5: two messages and two uses wait');
	expect_nothing($l, 0.5, '5: not announced while paused');

	$node->stop('immediate');
	kill_session($_) for ($h, $w, $l->{s});
	$node->start;
	ok(count_log(qr/database system was not properly shut down; automatic recovery in progress/,
			$log_offset) >= 1, '5: the server went through crash recovery');

	$l = listener('listed');
	$w = session('listed');
	expect_nothing($l, 0.5, '5: nothing announced after the restart while still paused');
	set_paused(0);
	expect_exactly($l, $want,
		'5: after the restart, the events committed unannounced are announced exactly once, the one announced before not again',
		settle => 3);
	$relay_listed = relay_pid('listed');

	# (b) again, right after the announcement.  The relay's transaction
	# writes no WAL of its own but its commit record (the notification
	# queue is not WAL-logged), and PostgreSQL flushes such a commit
	# asynchronously whatever synchronous_commit says: the listener may get
	# the notification before the commit record, which carries the
	# origin's progress, is on disk; the walwriter flushes it within
	# wal_writer_delay (200 ms by default).  At 10 s (the maximum) the
	# window is wide enough to hit every time.  The design promises that
	# the relay announces nothing twice at synchronous_commit = on.
	$node->safe_psql('postgres', "ALTER SYSTEM SET wal_writer_delay = '10s'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	usleep(300_000);
	# for after the restart (no reload: the relay runs on)
	$node->safe_psql('postgres', 'ALTER SYSTEM SET invitetomedia.relay_paused = on');
	my ($i3, $t3) = new_invite('listed', 'c3@x.example', 1, 'false');
	is(consume('listed', $t3, 'c3@x.example'), 'ok', '5: another use');
	# the relay's cursor for the use: its record's id (1.1), its event_seq (2.0)
	my $r3 = $node->safe_psql('listed', $v2
		? "SELECT event_seq FROM invitetomedia.redemptions WHERE invite_id = $i3 AND status = 'ok'"
		: 'SELECT max(redemption_id) FROM invitetomedia.redemptions');
	like($r3, qr/^\d+$/, "5: the use's record has its relay counter ($r3)");
	expect_exactly($l, [ accepted_invite($i3) ], '5: announced', settle => 0);
	$log_offset = -s $node->logfile;
	$node->stop('immediate');
	kill_session($_) for ($w, $l->{s});
	$node->start;
	ok(count_log(qr/database system was not properly shut down; automatic recovery in progress/,
			$log_offset) >= 1, '5: the server went through crash recovery again');
	# the relay is paused: its cursor is what the crash left
	my $cursor = $node->safe_psql('listed', qq{
		SELECT s.remote_lsn - '0/0'::pg_lsn
		  FROM pg_replication_origin_status s
		  JOIN pg_replication_origin o ON o.roident = s.local_id
		 WHERE o.roname = 'invitetomedia_' || (SELECT oid FROM pg_database WHERE datname = current_database())
		                  || '_' || 'invitetomedia.$relay_seq{redemptions}'::regclass::oid});
	cmp_ok($cursor, '>=', $r3,
		"5: the relay's cursor survived the crash: at or past the announced use's record ($r3)");
	$l = listener('listed');
	$w = session('listed');
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET wal_writer_delay');
	set_paused(0);
	expect_nothing($l, 3, '5: after the second restart, nothing announced again (3 s of rounds)');
	my ($i4, $t4) = new_invite('listed', 'c4@x.example', 1, 'false');
	is(consume('listed', $t4, 'c4@x.example'), 'ok', '5: a use after the restart');
	expect_exactly($l, [ accepted_invite($i4) ], '5: the relay runs after the restart: that use alone arrives');
	$relay_listed = relay_pid('listed');
}

########################################################################
# 6. load: 8 clients, every ok use announced once
########################################################################

my $dir = PostgreSQL::Test::Utils::tempdir;
open my $fh, '>', "$dir/consume.sql" or die;
# mostly a link nobody used; one try in ten a random one of the first
# thousand (mostly exhausted by then: a refusal)
print $fh q{
\set r random(1, 10)
SELECT nextval('public.pick') AS n \gset
\if :r = 1
\set n random(1, 1000)
\endif
SELECT c.status
  FROM public.tok t, LATERAL invitetomedia.invite_consume(t.token, t.email) c
 WHERE t.id = :n;
};
close $fh;
open $fh, '>', "$dir/create.sql" or die;
print $fh q{
SELECT 1 FROM invitetomedia.invite_create('m1', 'owner',
  'm' || nextval('public.newmail') || '@load.example', 'F', 'L', 'viewer', true);
};
close $fh;
# joins of one unlimited guest link: every payload is the same
open $fh, '>', "$dir/join.sql" or die;
print $fh q{
\set k random(1, 1000000000)
SELECT j.status FROM public.guest g,
       LATERAL invitetomedia.guest_link_join(g.token, 'j' || :k || '@load.example', 'J', 'J') j;
};
close $fh;

sub start_pgbench
{
	my ($seconds, $out, $err) = @_;
	my @cmd = ('pgbench', '-n', '-c', $clients, '-j', $clients, '-T', $seconds, '-R', $rate,
		'-f', "$dir/consume.sql\@8", '-f', "$dir/create.sql\@1", '-f', "$dir/join.sql\@1",
		'-h', $node->host, '-p', $node->port, 'load');
	return IPC::Run::start(\@cmd, '>', $out, '2>', $err,
		IPC::Run::timeout($seconds + $wait_timeout));
}

# drains the listener while pgbench runs; $during is called on each turn
sub run_pgbench
{
	my ($h, $ll, $during) = @_;
	while (1)
	{
		$h->pump_nb;
		last unless $h->pumpable;
		drain($ll);
		$during->() if $during;
		usleep(50_000);
	}
	return $h->finish;
}

my $ll = listener('load');
my $relay_load = relay_pid('load');
{
	my $m = marks('load');
	my ($out, $err) = ('', '');
	my $h = start_pgbench(4, \$out, \$err);
	my $ok = run_pgbench($h, $ll);
	ok($ok, '6: pgbench ran without error') or diag("pgbench: $out\n$err");
	my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
	my $want = events_since('load', $m);
	my $uses = grep { /"kind":"invite"/ } @$want;
	my $joins = grep { /"kind":"guest_link"/ } @$want;
	my $mails = grep { /^invitetomedia_email/ } @$want;
	diag("6: pgbench $clients clients, 4 s: " . ($tx // '?')
		  . " transactions; $uses ok uses, $joins joins, $mails messages");
	cmp_ok($uses, '>', 200, '6: the load made many uses');
	my @got = expect_exactly($ll, $want,
		'6: under load, every ok use, join and message announced exactly once', settle => 1);
	is(join(',', keys %{ counts(map { $_->{pid} } @got) }), $relay_load,
		'6: all from the relay');
}

########################################################################
# 6b. a backlog larger than a round's read (10000 rows per table)
########################################################################

# One transaction uses 12000 links: its rows become visible at once, the
# relay reads 10000 of them in a round and the rest in the next.
{
	my $m = marks('load');
	my $from = $node->safe_psql('load', "SELECT setval('public.pick', nextval('public.pick') + 12000) - 11999");
	is($node->safe_psql('load', qq{
		SELECT count(*) FILTER (WHERE c.status = 'ok')
		  FROM public.tok t, LATERAL invitetomedia.invite_consume(t.token, t.email) c
		 WHERE t.id BETWEEN $from AND $from + 11999}),
		'12000', '6b: one transaction used 12000 links');
	my $want = events_since('load', $m);
	is(scalar(@$want), 12000, '6b: 12000 uses to announce');
	expect_exactly($ll, $want, '6b: every one of the 12000 announced exactly once', settle => 1);
}

########################################################################
# 7. the relay's first start under load
########################################################################

# The start must lose nothing and repeat nothing while writers run: until
# the relay is ready, a writer that finds no origins announces its own
# events under a share lock; the relay takes that lock exclusively, reads
# the sequences, creates its origins there, marks the database ready and
# lets go.  To make the relay start again from scratch:
#  - pause (every relay), so that the relay that will start waits;
#  - terminate the relay of load: its worker comes back after 2 s, clears
#    the database's ready mark before it connects, and, paused, does not
#    start;
#  - then (nothing is written meanwhile, and everything written before was
#    announced) drop the three origins of load;
#  - start pgbench: the writers find the relay not ready and no origins,
#    and notify themselves, each holding the share lock to its commit;
#  - 1.5 s into the load, unpause: the relay's first start runs while 8
#    clients write: its exclusive lock waits for the transactions in
#    flight, and the writers that come after wait for it to be ready.
# Whether a writer falls into the narrowest window (between its look at
# the ready mark and its lock) is up to the scheduler, but the start runs
# with every client in the middle of a transaction, again and again; the
# checks below show that the start happened while pgbench ran and that
# both the writers and the relay announced uses in this window.
#
# (Dropping the origins before the paused relay was terminated, as one
# might first think of doing, is another case: the old relay's ready mark
# stays set until the new worker clears it, so the writers of those
# seconds leave their events to a relay whose first start then begins
# after them; see check 9 for the same stale mark.)
{
	set_paused(1);
	$node->safe_psql('load', "SELECT pg_terminate_backend($relay_load)");
	ok(poll_until(sub { my $p = relay_pid('load'); $p ne '' && $p ne $relay_load }),
		'7: the relay of load came back (paused)');
	my $new_relay = relay_pid('load');
	is($node->safe_psql('load', q{
		SELECT count(pg_replication_origin_drop(roname)) FROM pg_replication_origin
		 WHERE roname LIKE 'invitetomedia\_' || (SELECT oid FROM pg_database WHERE datname = 'load') || '\_%'}),
		'3', '7: its three origins dropped');
	expect_nothing($ll, 0.3, '7: nothing in flight before the load');

	my $log_offset = -s $node->logfile;
	my $m = marks('load');
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $h = start_pgbench(5, \$out, \$err);
	my ($unpaused, $started_under_load) = (0, 0);
	my $ok = run_pgbench($h, $ll, sub {
		if (!$unpaused && time - $t0 > 1.5)
		{
			set_paused(0);
			$unpaused = 1;
		}
		if ($unpaused && !$started_under_load
			&& slurp_file($node->logfile, $log_offset)
			=~ /invitetomedia relay: announcing the events of database "load" from now on/)
		{
			$h->pump_nb;
			$started_under_load = $h->pumpable ? 1 : -1;
		}
	});
	ok($ok, '7: pgbench ran without error') or diag("pgbench: $out\n$err");
	is($started_under_load, 1, '7: the relay\'s first start happened while pgbench was running');
	my $want = events_since('load', $m);
	my @got = expect_exactly($ll, $want,
		'7: across the first start, every ok use, join and message announced exactly once',
		settle => 1);
	my $by_relay = grep { $_->{pid} == $new_relay } @got;
	my $by_writers = @got - $by_relay;
	my ($start) = slurp_file($node->logfile, $log_offset) =~ /(announcing the events of database "load"[^\n]*)/;
	diag("7: " . scalar(@$want) . " events, $by_writers announced by the writers, $by_relay by the relay; "
		  . ($start // 'no start logged'));
	ok($by_writers > 0 && $by_relay > 0,
		'7: the writers announced their own events before the start, the relay after it');
	$relay_load = $new_relay;
}

########################################################################
# 8. a record sequence changed: the relay stops and says why, events wait
########################################################################

{
	my $log_offset = -s $node->logfile;
	my ($i1, $t1) = new_invite('listed', 's1@x.example', -1, 'false');
	$node->safe_psql('listed', "ALTER SEQUENCE invitetomedia.$relay_seq{redemptions} CACHE 10");
	ok(wait_log(qr/ERROR:  invitetomedia relay: cannot announce the records of invitetomedia\.redemptions: its CACHE is not 1\n[^\n]*DETAIL:  [^\n]*invitetomedia\.\Q$relay_seq{redemptions}\E/,
			$log_offset, 10),
		'8: CACHE 10: the relay logs an error naming the table, its sequence and "CACHE is not 1"');
	my $mid = -s $node->logfile;
	is($w->query_safe(consume_sql($t1, 's1@x.example')), 'ok', '8: a use while the relay is broken');
	expect_nothing($l, 2.5, '8: not announced while the sequence is broken');
	ok(count_log(qr/its CACHE is not 1/, $mid) >= 1,
		'8: the relay, restarted, stops again with the same error');
	$node->safe_psql('listed', "ALTER SEQUENCE invitetomedia.$relay_seq{redemptions} CACHE 1");
	expect_exactly($l, [ accepted_invite($i1) ],
		'8: after CACHE 1 again, the use made meanwhile is announced once');
	# the session that drew an id under CACHE 10 draws again (its cache
	# of ids must not outlive the repair)
	is($w->query_safe(consume_sql($t1, 's1@x.example')), 'ok', '8: the same session uses again');
	expect_exactly($l, [ accepted_invite($i1) ], '8: announced once');
}

########################################################################
# 8b. the other shapes the relay refuses: a default (1.1: the ids come
#     from the column's default; 2.0's writers draw event_seq, so a
#     sequence that does not increase instead), a CYCLE
########################################################################

{
	my $m = marks('listed');
	my $first = $v2
	  ? [ 'guest_link_joins', 'it does not increase',
		  'ALTER SEQUENCE invitetomedia.guest_link_joins_event_seq INCREMENT BY -1',
		  'ALTER SEQUENCE invitetomedia.guest_link_joins_event_seq INCREMENT BY 1' ]
	  : [ 'guest_link_joins', "the column's default is not its nextval()",
		  q{ALTER TABLE invitetomedia.guest_link_joins ALTER COLUMN join_id
		      SET DEFAULT pg_catalog.nextval('invitetomedia.guest_link_joins_join_id_seq'::pg_catalog.regclass) + 1},
		  q{ALTER TABLE invitetomedia.guest_link_joins ALTER COLUMN join_id
		      SET DEFAULT pg_catalog.nextval('invitetomedia.guest_link_joins_join_id_seq'::pg_catalog.regclass)} ];
	for my $case ($first,
		[ 'outbox', 'it has CYCLE',
		  "ALTER SEQUENCE invitetomedia.$relay_seq{outbox} CYCLE",
		  "ALTER SEQUENCE invitetomedia.$relay_seq{outbox} NO CYCLE" ])
	{
		my ($table, $problem, $break, $repair) = @$case;
		my $log_offset = -s $node->logfile;
		$node->safe_psql('listed', $break);
		ok(wait_log(qr/ERROR:  invitetomedia relay: cannot announce the records of invitetomedia\.$table: \Q$problem\E/,
				$log_offset, 10),
			"8b: $table: the relay logs \"$problem\"");
		$node->safe_psql('listed', $repair);
	}
	my ($i, $t) = new_invite('listed', 'shape@x.example', 1);
	is(consume('listed', $t, 'shape@x.example'), 'ok', '8b: a use and a message after the repairs');
	my $tg = $node->safe_psql('listed',
		"SELECT token FROM invitetomedia.guest_link_create('w1', 'owner', 'Shape')");
	is($node->safe_psql('listed', "SELECT status FROM invitetomedia.guest_link_join('$tg', 'sh\@x.example', 'S', 'S')"),
		'ok', '8b: and a join');
	my $want = events_since('listed', $m);
	is(scalar(@$want), 3, '8b: three events');
	expect_exactly($l, $want, '8b: announced once the shapes are repaired');
}

########################################################################
# 9. the extension dropped and created again in a relayed database
########################################################################

# With the relay paused, DROP EXTENSION and CREATE EXTENSION in load, then
# a create with email and a use; unpause.  The new sequences have no
# origins yet, so these events are the writers' to announce (as before any
# first start: "a writer that finds the relay not ready and no origins
# ... announces its own events") or the relay's; 1.1 announces them.
# What happens: the shared "ready" mark of load, set by the running relay,
# stays set (only a new worker clears it), so the writers leave their
# events to the relay; the relay, unpaused, fails on the dropped sequences
# ("could not open relation"), restarts 2 s later, drops the stale
# origins and starts afresh after the sequences' current values: the two
# events are never announced.  Without the pause the same befalls the
# events written between the DROP and the new worker's start (about 2 s).
{
	set_paused(1);
	$node->safe_psql('load', "DROP EXTENSION invitetomedia;\n$setup");
	my ($i, $t) = new_invite('load', 'again@x.example', 1);
	is(consume('load', $t, 'again@x.example'), 'ok', '9: a use in the re-created extension');
	my $want = events_since('load', undef);
	is(scalar(@$want), 2, '9: a message and a use');
	set_paused(0);
	expect_exactly($ll, $want,
		'9: after DROP and CREATE EXTENSION (relay paused), the new events are announced once',
		timeout => 10, settle => 3);
}

$_->quit for ($l->{s}, $ll->{s}, $w);
$node->stop;
done_testing();
