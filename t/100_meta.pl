# The release agrees with itself: META.json (PGXN Meta Spec 1.0.0), the
# control file, the install and update scripts, debian/changelog and the
# archive `make dist` writes (dist.mk).  Needs no cluster.
#
#  - META.json parses and has every key the spec requires (name, version,
#    abstract, maintainer, license, provides, meta-spec) and those issue 11
#    asks for (description, prereqs, tags; resources is optional until the
#    project has a public home, and checked when present), each of the
#    spec's form: SemVer versions, terms, tags, version ranges, known
#    phases and relations, no unknown keys;
#  - its version is the control file's default_version read as a SemVer
#    (PGXN versions have three parts: '1.1' is 1.1.0), and so is the
#    extension's version in "provides"; the versions the install and update
#    scripts (invitetomedia--*.sql) reach are those t/lib/ItmVersion.pm
#    lists; default_version is the newest released one there, and the
#    newest version the scripts reach unless a version is under
#    construction (ItmVersion's next versions, none while 2.0 is the
#    default: newer than default_version, not yet released), and debian/changelog's
#    upstream version (1.1 in 1.1-1);
#  - the runtime prereqs name PostgreSQL from 15.0.0 and every extension
#    the control file requires;
#  - `make dist` on a snapshot of the tree (every file .gitignore does not
#    ignore, committed to a scratch repository, so that the check sees the
#    tree as it is, with or without .git) writes NAME-VERSION.zip holding
#    everything under NAME-VERSION/, with META.json, the control file, every
#    install and update script, the Makefile, README.md, LICENSE and
#    CHANGELOG.md, and no build product, test output or export-ignored
#    file; and the unpacked archive builds as `pgxn install` builds it
#    (make PG_CONFIG=...), and builds the sender (make -C sender) where
#    pkg-config finds GMime 3 and libpq.
#
# This file is itself export-ignored (.gitattributes): it checks the
# repository, and a distribution has neither .git nor debian/.
use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Uncompress::Unzip qw($UnzipError);
use JSON::PP;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ItmVersion qw(vercmp known_versions next_versions default_release);

my $ext = 'invitetomedia';
my $srcdir = abs_path($ENV{ITM_SRCDIR} || '.');

sub slurp
{
	my ($file) = @_;
	open my $fh, '<:raw', $file or die "cannot read $file: $!\n";
	local $/;
	return scalar <$fh>;
}

# -- the spec's value forms (schema/v1 of pgxn/pgxn-meta-spec) ---------------
my $semver_re = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)
	(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?
	(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/x;
my $term_re = qr{^[^/\\\s[:cntrl:]]{2,}$};
my $tag_re = qr{^[^/\\[:cntrl:]]{2,255}$};
my $custom_re = qr/^[xX]_./;

sub is_semver { my ($v) = @_; return defined $v && !ref $v && $v =~ $semver_re; }

# a version range: "0", or clauses "[op] semver" joined by commas
sub range_clauses
{
	my ($range) = @_;
	return () unless defined $range && !ref $range;
	return ([ '>=', '0.0.0' ]) if "$range" eq '0';
	my @clauses;
	for my $c (split /,\s*/, "$range", -1)
	{
		$c =~ /^(?:([=!]=|[<>]=?)\s*)?(\S+)$/ or return ();
		my ($op, $v) = ($1 // '>=', $2);
		return () unless is_semver($v);
		push @clauses, [ $op, $v ];
	}
	return @clauses;
}

sub is_uri
{
	my ($u) = @_;
	return defined $u && !ref $u && $u =~ m{^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]+[^\s]*$};
}


# a PostgreSQL extension version as PGXN writes it: '1.1' is 1.1.0
sub as_semver
{
	my ($v) = @_;
	my @p = split /\./, $v;
	return $v if @p > 3 || grep { !/^\d+$/ } @p;
	push @p, 0 while @p < 3;
	return join '.', map { $_ + 0 } @p;
}

# -- META.json ----------------------------------------------------------------
my $meta = eval { JSON::PP->new->utf8->decode(slurp("$srcdir/META.json")) };
ok(ref $meta eq 'HASH', 'META.json parses as a JSON object')
  or BAIL_OUT("META.json: " . ($@ || 'not an object'));

my @spec_required = qw(name version abstract maintainer license provides meta-spec);
my @issue_required = qw(description prereqs tags);
for my $key (@spec_required, @issue_required)
{
	ok(exists $meta->{$key}, "META.json has \"$key\"");
}
my %known = map { $_ => 1 } @spec_required, qw(description generated_by tags
  no_index prereqs release_status resources);
my @unknown = grep { !$known{$_} && $_ !~ $custom_re } sort keys %$meta;
is("@unknown", '', 'META.json has no key the spec does not know (custom keys start with x_)');

is($meta->{name}, $ext, "name is \"$ext\"");
like($meta->{name} // '', $term_re, 'name is a term');
ok(is_semver($meta->{version}), "version \"" . ($meta->{version} // '') . "\" is a SemVer");
for my $key (qw(abstract description generated_by))
{
	ok(defined $meta->{$key} && !ref $meta->{$key} && length $meta->{$key},
		"$key is a non-empty string");
}
{
	my $m = $meta->{maintainer};
	my @m = ref $m eq 'ARRAY' ? @$m : (defined $m && !ref $m ? ($m) : ());
	ok(@m && !grep({ !defined $_ || ref $_ || !length $_ } @m),
		'maintainer is a string or a non-empty list of strings');
}
is($meta->{license}, 'postgresql', 'license is "postgresql"');
like(slurp("$srcdir/LICENSE"), qr/^PostgreSQL License/, 'LICENSE is the PostgreSQL License');

my $ms = $meta->{'meta-spec'};
ok(ref $ms eq 'HASH' && ($ms->{version} // '') eq '1.0.0', 'meta-spec version is 1.0.0');
is($ms->{url}, 'https://pgxn.org/meta/spec.txt', 'meta-spec url is the spec\'s');
is(join(',', grep { !/^(version|url)$/ && $_ !~ $custom_re } keys %{ $ms || {} }), '',
	'meta-spec has no other key');

ok(($meta->{release_status} // '') =~ /^(stable|testing|unstable)$/,
	'release_status is stable, testing or unstable');

{
	my $tags = $meta->{tags};
	ok(ref $tags eq 'ARRAY' && @$tags, 'tags is a non-empty list');
	my @bad = grep { !defined $_ || ref $_ || $_ !~ $tag_re } @{ $tags || [] };
	is("@bad", '', 'every tag is 2 to 255 characters without /, \\ or control characters');
	my %seen;
	my @dup = grep { $seen{ $_ // '' }++ } @{ $tags || [] };
	is("@dup", '', 'no tag twice');
}

# provides: the extension, with its file and version
my $provides = $meta->{provides};
ok(ref $provides eq 'HASH' && %$provides, 'provides names at least one extension');
for my $name (sort keys %{ $provides || {} })
{
	my $p = $provides->{$name};
	like($name, $term_re, "provides: \"$name\" is a term");
	ok(ref $p eq 'HASH', "provides/$name is an object") or next;
	ok(is_semver($p->{version}), "provides/$name/version is a SemVer");
	for my $f (qw(file docfile))
	{
		next if $f eq 'docfile' && !exists $p->{docfile};
		ok(defined $p->{$f} && -f "$srcdir/$p->{$f}",
			"provides/$name/$f (" . ($p->{$f} // 'missing') . ") is a file of the tree");
	}
	my @other = grep { !/^(file|version|abstract|docfile)$/ && $_ !~ $custom_re } sort keys %$p;
	is("@other", '', "provides/$name has no unknown key");
}
ok(exists $provides->{$ext}, "provides names the extension $ext");

# prereqs: known phases and relations, version ranges
my $prereqs = $meta->{prereqs};
ok(ref $prereqs eq 'HASH' && %$prereqs, 'prereqs is an object with a phase');
for my $phase (sort keys %{ $prereqs || {} })
{
	ok($phase =~ /^(configure|build|test|runtime|develop)$/ || $phase =~ $custom_re,
		"prereqs: \"$phase\" is a phase");
	for my $rel (sort keys %{ $prereqs->{$phase} || {} })
	{
		ok($rel =~ /^(requires|recommends|suggests|conflicts)$/ || $rel =~ $custom_re,
			"prereqs/$phase: \"$rel\" is a relation");
		my $set = $prereqs->{$phase}{$rel};
		for my $dep (sort keys %{ $set || {} })
		{
			ok(scalar(range_clauses($set->{$dep})),
				"prereqs/$phase/$rel/$dep: \"$set->{$dep}\" is a version range");
		}
	}
}
my $runtime = ($prereqs->{runtime} || {})->{requires} || {};
{
	my @lower = map { $_->[1] } grep { $_->[0] =~ /^(>=|==)$/ }
	  range_clauses($runtime->{PostgreSQL});
	is("@lower", '15.0.0', 'runtime requires PostgreSQL from 15.0.0');
}

# resources: optional (no public home yet); of the spec's form when present
SKIP:
{
	skip 'no resources in META.json (add them with the project\'s public URLs)', 1
	  unless exists $meta->{resources};
	my $r = $meta->{resources};
	my @bad;
	if (ref $r ne 'HASH' || !grep { exists $r->{$_} } qw(homepage bugtracker repository))
	{
		push @bad, 'needs homepage, bugtracker or repository';
	}
	else
	{
		for my $k (sort keys %$r)
		{
			if ($k eq 'homepage') { push @bad, $k unless is_uri($r->{$k}); }
			elsif ($k eq 'bugtracker' || $k eq 'repository')
			{
				my $o = $r->{$k};
				if (ref $o ne 'HASH') { push @bad, $k; next; }
				for my $s (sort keys %$o)
				{
					next if $s =~ $custom_re;
					push @bad, "$k/$s"
					  unless ($s =~ /^(web|url)$/ && is_uri($o->{$s}))
					  || ($k eq 'bugtracker' && $s eq 'mailto' && ($o->{$s} // '') =~ /\@/)
					  || ($k eq 'repository' && $s eq 'type' && ($o->{$s} // '') =~ /^\p{Ll}+$/);
				}
			}
			elsif ($k !~ $custom_re) { push @bad, $k; }
		}
	}
	is("@bad", '', 'resources holds URIs in the spec\'s keys');
}

# -- the control file and the scripts --------------------------------------------
my $control = slurp("$srcdir/$ext.control");
my ($default) = $control =~ /^\s*default_version\s*=\s*'([^']+)'/m;
ok(defined $default, "$ext.control has a default_version")
  or BAIL_OUT("no default_version in $ext.control");
my ($requires) = $control =~ /^\s*requires\s*=\s*'([^']*)'/m;
my $semver = as_semver($default);

is($meta->{version}, $semver,
	"META.json version is the control file's default_version '$default' ($semver)");
is(($provides->{$ext} || {})->{version}, $semver,
	"provides/$ext/version is default_version ($semver)");
for my $dep (grep { length } split /\s*,\s*/, $requires // '')
{
	ok(exists $runtime->{$dep}, "runtime requires $dep, as the control file does");
}

my (@install, %edges, @scripts);
for my $f (sort glob("$srcdir/$ext--*.sql"))
{
	my $b = basename($f);
	push @scripts, $b;
	if ($b =~ /^\Q$ext\E--(.+?)--(.+)\.sql$/) { push @{ $edges{$1} }, $2; }
	elsif ($b =~ /^\Q$ext\E--(.+)\.sql$/) { push @install, $1; }
}
ok(@install, 'an install script ' . join(', ', map { "$ext--$_.sql" } @install));
my %reach;
my @todo = @install;
while (defined(my $v = shift @todo))
{
	next if $reach{$v}++;
	push @todo, @{ $edges{$v} || [] };
}
my @reach = sort { vercmp($a, $b) } keys %reach;
is("@reach", join(' ', known_versions()),
	'the versions the scripts reach are those t/lib/ItmVersion.pm lists, released and under construction');
is($default, default_release(),
	"default_version is the newest released version t/lib/ItmVersion.pm lists");
my @next = next_versions();
for my $v (@next)
{
	ok(vercmp($v, $default) > 0, "the version under construction $v is newer than default_version");
}
my $newest = $reach[-1];
is($newest, @next ? $next[-1] : $default,
	"the newest version the scripts reach (@reach) is default_version"
	  . (@next ? ", or the version under construction: $next[-1]" : ''));

# -- debian/changelog ---------------------------------------------------------------
{
	my $changelog = "$srcdir/debian/changelog";
	if (!-f $changelog)
	{
		fail("debian/changelog is missing: the Debian packaging (debian/, issue 11) "
			  . "must have one whose first entry is version $default-N");
	}
	else
	{
		my ($head) = split /\n/, slurp($changelog);
		my ($src, $dver) = ($head // '') =~ /^(\S+) \(([^)]+)\)/;
		ok(defined $dver, "debian/changelog's first line names a version: " . ($head // ''));
		my $upstream = $dver // '';
		$upstream =~ s/^\d+://;           # epoch
		$upstream =~ s/-[^-]+$//;         # Debian revision
		is($upstream, $default,
			"debian/changelog's upstream version (" . ($dver // '?') . ") is default_version");
	}
}

# -- make dist ----------------------------------------------------------------------
# A scratch repository commits the tree as it is (what .gitignore does not
# ignore) and dist.mk archives that commit: git and make see it through
# GIT_DIR and GIT_WORK_TREE, and the tree itself is only read.
sub run_log
{
	my ($log, @cmd) = @_;
	my $pid = fork // die "fork: $!";
	if (!$pid)
	{
		open STDOUT, '>>', $log or die;
		open STDERR, '>&', \*STDOUT or die;
		exec @cmd or die "exec $cmd[0]: $!";
	}
	waitpid $pid, 0;
	return $?;
}

sub tail_of
{
	my ($log) = @_;
	my @l = split /\n/, (-f $log ? slurp($log) : '');
	return join("\n", @l > 40 ? @l[-40 .. -1] : @l);
}

SKIP:
{
	skip 'git is not installed', 1 if system('git --version >/dev/null 2>&1') != 0;
	my $pg_config = $ENV{PG_CONFIG} || 'pg_config';
	skip "$pg_config is not installed (the Makefile needs PGXS)", 1
	  if system("$pg_config --pgxs >/dev/null 2>&1") != 0;

	my $tmp = tempdir('itm_dist_XXXX', TMPDIR => 1, CLEANUP => 1);
	my $log = "$tmp/log";
	# no make state of a calling make (PGXS's installcheck), no git state
	# of a calling git
	local %ENV = %ENV;
	delete $ENV{$_} for grep { /^(GIT_|MAKE|MFLAGS)/ } keys %ENV;
	$ENV{GIT_DIR} = "$tmp/snapshot.git";
	$ENV{GIT_WORK_TREE} = $srcdir;
	$ENV{GIT_CONFIG_NOSYSTEM} = 1;
	$ENV{HOME} = $tmp;    # no user configuration either
	my @git = qw(git -c user.name=t100 -c user.email=t100@localhost
	  -c commit.gpgsign=false -c core.autocrlf=false);
	my $rc = run_log($log, @git, qw(init -q))
	  || run_log($log, @git, qw(add -A))
	  || run_log($log, @git, qw(commit -q --no-verify -m snapshot));
	is($rc, 0, 'the tree is committed to a scratch repository')
	  or diag(tail_of($log));

	make_path("$tmp/out");
	my $makefiles = slurp("$srcdir/Makefile") =~ /^\s*-?include\s+\S*dist\.mk\b/m
	  ? [] : [ qw(-f Makefile -f dist.mk) ];
	$rc = run_log($log, 'make', '-C', $srcdir, @$makefiles, 'dist',
		"PG_CONFIG=$pg_config", "DIST_DIR=$tmp/out");
	is($rc, 0, 'make dist succeeds') or diag(tail_of($log));

	my $top = "$meta->{name}-$meta->{version}";
	my $zip = "$tmp/out/$top.zip";
	ok(-f $zip, "make dist wrote $top.zip")
	  or skip 'no archive', 1;

	# the members, read with the core's unzip
	my (%content, @names);
	my $u = IO::Uncompress::Unzip->new($zip)
	  or BAIL_OUT("cannot read $zip: $UnzipError");
	for (my $status = 1; $status > 0; $status = $u->nextStream)
	{
		my $name = $u->getHeaderInfo->{Name};
		my ($data, $buf) = ('', '');
		$data .= $buf while $u->read($buf, 65536) > 0;
		push @names, $name;
		$content{$name} = $data unless $name =~ m{/$};
	}
	ok(@names > 1, scalar(@names) . ' members in the archive');

	my @outside = grep { index($_, "$top/") != 0 } @names;
	is("@outside", '', "every member is under $top/");
	my %have = map { substr($_, length("$top/")) => 1 } grep { !m{/$} } @names;
	for my $f ('META.json', "$ext.control", @scripts, qw(Makefile README.md LICENSE CHANGELOG.md),
		map { $_->{file}, $_->{docfile} // () } values %{ $provides || {} })
	{
		ok($have{$f}, "the archive holds $f");
	}
	is($content{"$top/META.json"}, slurp("$srcdir/META.json"),
		"the archive's META.json is the tree's");

	my @unwanted = grep {
		m{(^|/)[^/]+\.(o|so|bc|a|gcda|gcno|zip)$}
		  || m{(^|/)(results|tmp_check|tmp_check_iso|output_iso|log|\.git)(/|$)}
		  || m{(^|/)regression\.(diffs|out)$}
		  || m{^(\.ci|bench|debian)(/|$)}
		  || m{(^|/)\Q$ext\E-sender$}
		  || $_ eq 't/100_meta.pl'
		  || $_ eq '.gitignore' || $_ eq '.gitattributes'
	} sort keys %have;
	is("@unwanted", '',
		'no build product, test output, VCS file or export-ignored file in the archive');

	# as `pgxn install` builds it: unpack, make PG_CONFIG=... (then make install)
	my $unpack = "$tmp/unpack";
	for my $name (sort keys %content)
	{
		my $path = "$unpack/$name";
		make_path(dirname($path));
		open my $fh, '>:raw', $path or die "$path: $!";
		print $fh $content{$name};
		close $fh;
	}
	delete @ENV{qw(GIT_DIR GIT_WORK_TREE)};
	$rc = run_log($log, 'make', '-C', "$unpack/$top", "PG_CONFIG=$pg_config", 'all');
	is($rc, 0, 'the unpacked archive builds with make PG_CONFIG=... all, as pgxn install runs it')
	  or diag(tail_of($log));
	ok(-f "$unpack/$top/$ext.so", "and the build made $ext.so");

	# the sender, built on its own from the same sources
	skip 'no libpq or GMime 3 for the sender (pkg-config gmime-3.0 libpq)', 1
	  if system('pkg-config --exists gmime-3.0 libpq 2>/dev/null') != 0;
	$rc = run_log($log, 'make', '-C', "$unpack/$top/sender");
	ok($rc == 0 && -f "$unpack/$top/sender/$ext-sender",
		'the unpacked archive builds the sender with make -C sender')
	  or diag(tail_of($log));
}

done_testing();
