# Update path: install every version that has an install script (the oldest
# first, 1.0), step with ALTER EXTENSION invitetomedia UPDATE TO through
# every update script invitetomedia--A--B.sql of the tree up to the newest
# version (default_version in invitetomedia.control), and compare the
# result with a fresh CREATE EXTENSION.  Every version on the way (1.0.1 on
# the way to 1.1) is compared too: the database updated to it against a
# fresh CREATE EXTENSION ... VERSION of it.  So is a version under
# construction (t/lib/ItmVersion.pm's next versions: none since 2.0 is
# the default version, so 1.0, 1.0.1, 1.1 and 1.1.1 are each updated to
# 2.0 and compared with a fresh 2.0): its scripts must lie on a tested path to it,
# and it is reached by UPDATE TO and compared with CREATE EXTENSION ...
# VERSION.  The versions the scripts reach must be exactly those
# t/lib/ItmVersion.pm lists.
#
# pg_dump leaves an extension's member objects out of a dump (it writes
# only CREATE EXTENSION), so comparing plain dumps would compare nothing.
# Both databases therefore first have their member list and pg_extension
# row compared, then every member is detached (ALTER EXTENSION ... DROP),
# which makes pg_dump --schema-only write out its full definition: tables,
# columns, defaults, constraints, indexes, triggers, policies, functions,
# views, comments and privileges.  Those dumps must be equal, and so must
# the data of the configuration tables (the settings row) and, before the
# detaching (which removes them), the members' recorded initial privileges
# (pg_init_privs: what pg_dump takes for the extension's own grants).
# One column of the configuration data is the time of the install or
# update, not data the scripts carry: tenants.created_at (2.0 on).  It is
# left out of that comparison and checked on its own to lie within this run.
#
# Versions are discovered from the files, so the test covers update
# scripts as they appear; a test database with data made at the old
# version must still work after the update.
use strict;
use warnings;

use File::Basename;
use File::Compare;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ItmCatalog qw(detach_members);
use ItmVersion qw(vercmp known_versions next_versions default_release);

my $ext = 'invitetomedia';
my $srcdir = $ENV{ITM_SRCDIR} || '.';

# -- versions, from the tree ------------------------------------------------
my $control = slurp_file("$srcdir/$ext.control");
$control =~ /^\s*default_version\s*=\s*'([^']+)'/m
  or BAIL_OUT("no default_version in $ext.control");
my $newest = $1;
is($newest, default_release(),
	"default_version $newest is the newest released version t/lib/ItmVersion.pm lists");
my @next = next_versions();

my (@install, %edges, @scripts);
for my $f (sort glob("$srcdir/$ext--*.sql"))
{
	my $b = basename($f);
	push @scripts, $b;
	if ($b =~ /^\Q$ext\E--([^-]+(?:-[^-]+)*?)--(.+)\.sql$/)
	{
		push @{ $edges{$1} }, $2;
	}
	elsif ($b =~ /^\Q$ext\E--(.+)\.sql$/)
	{
		push @install, $1;
	}
}

@install = sort { vercmp($a, $b) } @install;
ok(scalar(@install) >= 1, 'install scripts: ' . join(', ', @install));
is($install[0], '1.0', 'the oldest install script is 1.0');
note('update scripts: '
	  . join(', ', map { my $a = $_; map { "$a--$_" } @{ $edges{$a} } } sort keys %edges));

# shortest path of update steps from one version to another (BFS)
sub path
{
	my ($from, $to) = @_;
	my %prev = ($from => undef);
	my @queue = ($from);
	while (@queue)
	{
		my $v = shift @queue;
		if ($v eq $to)
		{
			my @p = ($v);
			unshift @p, $prev{ $p[0] } while defined $prev{ $p[0] };
			return @p;
		}
		for my $w (sort { vercmp($a, $b) } @{ $edges{$v} || [] })
		{
			next if exists $prev{$w};
			$prev{$w} = $v;
			push @queue, $w;
		}
	}
	return;
}

# The paths to a version: from every installable version to it, and one
# through every update script that leads to it, so each script runs at
# least once.
sub paths_to
{
	my ($target) = @_;
	my %paths;
	for my $start (@install)
	{
		next if $start eq $target;
		my @p = path($start, $target) or next;
		$paths{ join(' ', @p) } = [@p];
		for my $a (sort keys %edges)
		{
			for my $b (@{ $edges{$a} })
			{
				my @head = path($start, $a) or next;
				my @tail = path($b, $target) or next;
				my @q = (@head, @tail);
				$paths{ join(' ', @q) } = \@q;
			}
		}
	}
	return \%paths;
}

for my $start (@install)
{
	next if $start eq $newest;
	ok(path($start, $newest), "version $start can be updated to $newest");
}
# a version under construction is newer than default_version and reached
# from it
for my $v (@next)
{
	ok(vercmp($v, $newest) > 0 && path($newest, $v),
		"version $v (under construction) is newer than $newest and can be updated to from it");
}
# every script lies on a tested path to default_version or, failing that,
# to a version under construction (1.1.1--2.0 leads only to 2.0)
my %paths_end = map { $_ => paths_to($_) } $newest, @next;
for my $a (sort keys %edges)
{
	for my $b (@{ $edges{$a} })
	{
		my ($end) = grep {
			my $e = $_;
			grep { join(' ', @$_) =~ /(^| )\Q$a $b\E( |$)/ } values %{ $paths_end{$e} }
		} $newest, @next;
		ok(defined $end, "update script $ext--$a--$b.sql is on a tested path"
			  . (defined $end ? " to $end" : " to $newest or to @next"));
	}
}

# every version an update reaches: the newest and those on the way, and
# the versions under construction
my %versions = map { $_ => 1 } @install, map { @$_ } values %edges;
is(join(' ', sort { vercmp($a, $b) } keys %versions), join(' ', known_versions()),
	'the versions the scripts reach are those t/lib/ItmVersion.pm lists');
my @targets = grep { %{ paths_to($_) } } sort { vercmp($a, $b) } keys %versions;
ok((grep { $_ eq $newest } @targets), "versions updated to: @targets");
for my $v (@next)
{
	ok((grep { $_ eq $v } @targets), "the version under construction $v is among them");
}

# -- the server -------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

# the installed scripts are the tree's (else run make install)
my $sharedir = $node->config_data('--sharedir');
for my $s (@scripts, "$ext.control")
{
	is(compare("$srcdir/$s", "$sharedir/extension/$s"), 0,
		"$s is installed as it is in the tree");
}

my ($host, $port) = ($node->host, $node->port);
# before any install: the earliest time an install-time column may hold
my $run_start = $node->safe_psql('postgres', 'SELECT now()');

sub members
{
	my ($db) = @_;
	return $node->safe_psql($db, qq{
		SELECT string_agg(pg_describe_object(classid, objid, 0), E'\\n'
		                  ORDER BY pg_describe_object(classid, objid, 0))
		  FROM pg_depend
		 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = '$ext')});
}

# the recorded initial privileges of the members (and their columns)
sub init_privs
{
	my ($db) = @_;
	return $node->safe_psql($db, qq{
		SELECT string_agg(format('%s: %s %s', pg_describe_object(i.classoid, i.objoid, i.objsubid),
		                         i.privtype, i.initprivs), E'\\n'
		                  ORDER BY pg_describe_object(i.classoid, i.objoid, i.objsubid), i.privtype,
		                           i.initprivs::text)
		  FROM pg_init_privs i
		  JOIN pg_depend d ON d.classid = i.classoid AND d.objid = i.objoid AND d.objsubid = 0
		 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = '$ext')});
}

sub ext_row
{
	my ($db) = @_;
	return $node->safe_psql($db, qq{
		SELECT e.extversion, e.extrelocatable, e.extnamespace::regnamespace,
		       (SELECT string_agg(c::regclass || '=' || coalesce(w, ''), ',' ORDER BY c::regclass::text)
		          FROM unnest(e.extconfig, e.extcondition) AS u(c, w))
		  FROM pg_extension e WHERE e.extname = '$ext'});
}

# detaches every member so that pg_dump writes it out
sub detach
{
	my ($db) = @_;
	detach_members($node, $db);
	is(members($db), '', "$db: every member detached");
}

sub pgdump
{
	my ($db, @opts) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '-h', $host, '-p', $port, @opts, $db ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump $db failed: $err";
	$out =~ s/^--.*\n//mg;    # comments name the database and versions
	# newer pg_dump fences its output with a random key
	$out =~ s/^\\(?:un)?restrict .*\n//mg;
	return $out;
}

# The columns of the configuration tables that hold the time of the install
# or update (set by now() in the script), not data: left out of the
# comparison of the data, and checked by install_times_ok instead.
my %install_time = ('invitetomedia.tenants' => 'created_at');

# pg_dump --data-only with the install-time columns of their COPY blocks
# replaced by a mark (the rest of each row as dumped)
sub config_data
{
	my ($db) = @_;
	my (@out, $col);
	for my $line (split /(?<=\n)/, pgdump($db, '--data-only'))
	{
		if (defined $col)
		{
			if ($line eq "\\.\n") { undef $col; }
			else
			{
				chomp(my $row = $line);
				my @f = split /\t/, $row, -1;
				$f[$col] = '<time of the install or update>';
				$line = join("\t", @f) . "\n";
			}
		}
		elsif ($line =~ /^COPY (\S+) \(([^)]*)\) FROM stdin;$/ && $install_time{$1})
		{
			my ($table, $list) = ($1, $2);
			my @cols = split /, /, $list;
			($col) = grep { $cols[$_] eq $install_time{$table} } 0 .. $#cols;
			die "pg_dump of $db: no column $install_time{$table} in $table" unless defined $col;
		}
		push @out, $line;
	}
	return join('', @out);
}

# the install-time columns of DB are set, each to a time of this run (when
# the install or update ran: after $run_start, not in the future), in every
# such table DB has
sub install_times_ok
{
	my ($db, $label) = @_;
	for my $table (sort keys %install_time)
	{
		next if $node->safe_psql($db, "SELECT to_regclass('$table') IS NULL") eq 't';
		my $c = $install_time{$table};
		is( $node->safe_psql($db, qq{
				SELECT count(*) || ' rows, ' || count(*) FILTER (WHERE $c IS NULL
				       OR $c NOT BETWEEN '$run_start'::timestamptz AND now())
				       || ' not of this run' FROM $table}),
			$node->safe_psql($db, "SELECT count(*) FROM $table") . ' rows, 0 not of this run',
			"$label: $table.$c is the time of the install or update");
		cmp_ok($node->safe_psql($db, "SELECT count(*) FROM $table"), '>', 0,
			"$label: $table has rows (the check above is not vacuous)");
	}
	return;
}

sub populate
{
	my ($db) = @_;
	$node->safe_psql($db, q{
		INSERT INTO invitetomedia.email_templates VALUES ('t', 'Invitation', 'Open {URL}');
		UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't';
		INSERT INTO invitetomedia.users VALUES ('owner', 'owner@site.example', 'O', 'Owner', 'admin');
		INSERT INTO invitetomedia.media VALUES ('m1', 'video', 'Film', 'owner');
	});
	return $node->safe_psql($db, q{
		SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'old@new.example', 'F', 'L', 'viewer', true)});
}

my $n = 0;
for my $target (@targets)
{
	# a fresh install of the target version (the default one: no VERSION)
	(my $fresh = "fresh_$target") =~ s/\W/_/g;
	$node->safe_psql('postgres', "CREATE DATABASE $fresh");
	$node->safe_psql($fresh, $target eq $newest
		? "CREATE EXTENSION $ext CASCADE"
		: "CREATE EXTENSION $ext VERSION '$target' CASCADE");
	is($node->safe_psql($fresh, "SELECT extversion FROM pg_extension WHERE extname = '$ext'"),
		$target, "a fresh install at $target");
	my $fresh_members = members($fresh);
	my $fresh_ext = ext_row($fresh);
	my $fresh_data = config_data($fresh);
	install_times_ok($fresh, "a fresh install at $target");
	my $fresh_init = init_privs($fresh);
	like($fresh_init, qr/invite_consume/, "$target: the members' initial privileges are recorded");
	detach($fresh);
	my $fresh_schema = pgdump($fresh, '--schema-only');
	like($fresh_schema, qr/CREATE FUNCTION invitetomedia\.invite_consume/,
		"$target: a detached dump holds the extension objects");

	my $paths = paths_to($target);
	for my $key (sort keys %$paths)
	{
		my @p = @{ $paths->{$key} };
		my $label = join(' -> ', @p);
		my $db = 'up' . ++$n;
		my $dbdata = "${db}data";

		for my $d ($db, $dbdata)
		{
			$node->safe_psql('postgres', "CREATE DATABASE $d");
			$node->safe_psql($d, "CREATE EXTENSION $ext VERSION '$p[0]' CASCADE");
		}
		my $token = populate($dbdata);
		for my $v (@p[ 1 .. $#p ])
		{
			$node->safe_psql($_, "ALTER EXTENSION $ext UPDATE TO '$v'") for ($db, $dbdata);
		}
		if ($target eq $newest)
		{
			# and the plain UPDATE finds nothing left to do
			my ($stdout, $stderr);
			$node->psql($db, "ALTER EXTENSION $ext UPDATE", stdout => \$stdout, stderr => \$stderr);
			like($stderr, qr/version "\Q$newest\E" of extension "$ext" is already installed/,
				"$label: ALTER EXTENSION UPDATE reaches the newest version");
		}
		else
		{
			is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = '$ext'"),
				$target, "$label: at $target");
		}

		is(members($db), $fresh_members, "$label: same member objects as a fresh install at $target");
		is(ext_row($db), $fresh_ext, "$label: same pg_extension row (version, config tables)");
		is(config_data($db), $fresh_data, "$label: same configuration data");
		install_times_ok($db, $label);
		is(init_privs($db), $fresh_init, "$label: same initial privileges (pg_init_privs)");
		detach($db);
		my $schema = pgdump($db, '--schema-only');
		ok($schema eq $fresh_schema, "$label: pg_dump --schema-only equals a fresh install at $target")
		  or diag(diff_text($fresh_schema, $schema));

		is( $node->safe_psql($dbdata,
				"SELECT status FROM invitetomedia.invite_consume('$token', 'old\@new.example')"),
			'ok', "$label: a link made at $p[0] consumes after the update");
	}
}
ok($n >= 2, "$n update path(s) tested");

# a few lines of unified-looking difference, for the failure message
sub diff_text
{
	my ($a, $b) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir;
	open my $fa, '>', "$dir/fresh.sql" or die;
	print $fa $a;
	close $fa;
	open my $fb, '>', "$dir/updated.sql" or die;
	print $fb $b;
	close $fb;
	my ($out, $err);
	IPC::Run::run([ 'diff', '-u', "$dir/fresh.sql", "$dir/updated.sql" ], '>', \$out, '2>', \$err);
	my @l = split /\n/, $out // '';
	return join("\n", @l[ 0 .. ($#l < 80 ? $#l : 80) ]);
}

$node->stop;
done_testing();
