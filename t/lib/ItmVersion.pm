# t/lib/ItmVersion.pm: extension versions as the TAP tests compare them.
package ItmVersion;

use strict;
use warnings;
use Exporter 'import';
our @EXPORT_OK = qw(vercmp);

# compare dotted versions part by part, numerically where both are numbers
sub vercmp
{
	my @a = split /\./, $_[0];
	my @b = split /\./, $_[1];
	while (@a || @b)
	{
		my ($x, $y) = (shift(@a) // 0, shift(@b) // 0);
		my $c = ($x =~ /^\d+$/ && $y =~ /^\d+$/) ? $x <=> $y : $x cmp $y;
		return $c if $c;
	}
	return 0;
}

1;
